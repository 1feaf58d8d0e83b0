/* The runtime handle. It holds the library's own duplicate of the caller's
 * communicator, the logger's settings, the device that the rank computes on
 * and the last error. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "runtime_impl.h"
#include "topology.h"
#include "wait.h"
#include "rollcall.h"
#include "device.h"

/* Returns the log level to use: the config's level when it is set (not -1),
 * else the level that $BALLAST_LOG names, else info. An unknown $BALLAST_LOG
 * value sets *env_invalid, so that the caller can report it once it can log. */
static int resolve_log_level(int configured, int *env_invalid)
{
    *env_invalid = 0;
    if (configured >= 0) {
        return configured;
    }
    const char *env = getenv("BALLAST_LOG");
    if (env != NULL && env[0] != '\0') {
        int level = bl_log_level_parse(env);
        if (level >= 0) {
            return level;
        }
        *env_invalid = 1;
    }
    return BL_LOG_INFO;
}

/* Under Slurm, logs one info line that names the job, its step, its nodes
 * and its restart count, so that a job's log says where it ran; outside
 * Slurm it logs nothing. The rank count in the line comes from MPI, not from
 * Slurm. */
static void log_scheduler(const bl_runtime_t *rt)
{
    const char *job = getenv("SLURM_JOB_ID");
    if (job == NULL) {
        return;
    }
    const char *step = getenv("SLURM_STEP_ID");
    const char *nodes = getenv("SLURM_JOB_NODELIST");
    const char *restarts = getenv("SLURM_RESTART_COUNT");
    bl_log(rt, BL_LOG_INFO, "slurm: job %s step %s on %s (restart %s), %d ranks", job,
           step != NULL ? step : "?", nodes != NULL ? nodes : "?",
           restarts != NULL ? restarts : "0", rt->size);
}

/* Returns the full config that a caller of any supported version meant,
 * marked with the current version. An older struct is shorter, so only the
 * fields of its version are read and the others keep their defaults
 * (version 1 had no device field). */
static bl_config_t upgrade_config(const bl_config_t *c)
{
    static const size_t size_of_version[] = {0, offsetof(bl_config_t, device), sizeof(bl_config_t)};
    bl_config_t full = BL_CONFIG_INIT;
    memcpy(&full, c, size_of_version[c->version]);
    full.version = BL_CONFIG_VERSION;
    return full;
}

bl_status_t bl_runtime_create(MPI_Comm comm, const bl_config_t *cfg, bl_runtime_t **out)
{
    static const bl_config_t defaults = BL_CONFIG_INIT;
    bl_runtime_t *rt = NULL;
    bl_status_t st = BL_OK;
    int initialized = 0;

    if (out == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (cfg == NULL) {
        cfg = &defaults;
    }
    /* Everything that can be checked locally is checked before the
     * collective MPI_Comm_dup, so a bad config fails on its own rank without
     * leaving a collective half done. There is no runtime yet to hold a
     * message, so these failures return a bare status; README.md ("API
     * details", "Creating a runtime") lists them. */
    if (cfg->version < 1 || cfg->version > BL_CONFIG_VERSION) {
        return BL_ERR_INVALID_ARG;
    }
    if ((cfg->allocator.alloc == NULL) != (cfg->allocator.release == NULL)) {
        return BL_ERR_INVALID_ARG;
    }
    if (cfg->log_level < -1 || cfg->log_level > BL_LOG_DEBUG || cfg->blas_threads < 0) {
        return BL_ERR_INVALID_ARG;
    }
    bl_config_t full = upgrade_config(cfg);
    if (full.device < BL_DEVICE_CPU || full.device > BL_DEVICE_MIRROR) {
        return BL_ERR_INVALID_ARG;
    }
    if (MPI_Initialized(&initialized) != MPI_SUCCESS || !initialized || comm == MPI_COMM_NULL) {
        return BL_ERR_INVALID_ARG;
    }
    rt = bl_mem_alloc(&cfg->allocator, sizeof *rt);
    if (rt == NULL) {
        return BL_ERR_NO_MEM;
    }
    memset(rt, 0, sizeof *rt);
    rt->cfg = full;
    rt->comm = MPI_COMM_NULL;
    rt->rollcall = rt->rollcall_answers = MPI_COMM_NULL;
    rt->device = bl_host_device;
    int env_invalid = 0;
    rt->cfg.log_level = resolve_log_level(cfg->log_level, &env_invalid);
    MPI_Comm_rank(comm, &rt->rank); /* the rank for log lines written before the duplicate exists */

    int rc = MPI_Comm_dup(comm, &rt->comm);
    if (rc != MPI_SUCCESS) {
        rt->comm = MPI_COMM_NULL;
        st = bl_fail_mpi(rt, rc, "MPI_Comm_dup of the caller's communicator");
        goto fail;
    }
    /* Errors on the runtime's communicator come back as return codes, which
     * the runtime turns into statuses. */
    rc = MPI_Comm_set_errhandler(rt->comm, MPI_ERRORS_RETURN);
    if (rc != MPI_SUCCESS) {
        st = bl_fail_mpi(rt, rc, "MPI_Comm_set_errhandler");
        goto fail;
    }
    MPI_Comm_rank(rt->comm, &rt->rank);
    MPI_Comm_size(rt->comm, &rt->size);
    st = bl_rollcall_setup(rt);
    if (st != BL_OK) {
        goto fail;
    }
    if (env_invalid) {
        bl_log(rt, BL_LOG_WARN,
               "BALLAST_LOG='%s' is not one of error, warn, info, debug; using info",
               getenv("BALLAST_LOG"));
    }
    /* The device is set up first, because a GPU rank may bind itself to
     * the cores near its GPU, and the topology should then see that binding.
     * The set-up is collective. */
    st = bl_device_setup(rt, full.device);
    if (st != BL_OK) {
        goto fail;
    }
    /* The topology set-up learns where this rank runs (with hwloc), chooses
     * how many BLAS threads it gets and logs a summary line per node. It is
     * collective. */
    st = bl_topology_setup(rt, cfg->blas_threads, &rt->blas_threads);
    log_scheduler(rt);
    if (st != BL_OK) {
        goto fail;
    }
    *out = rt;
    return BL_OK;

fail:
    bl_log(rt, BL_LOG_ERROR, "%s", rt->err.msg);
    bl_runtime_destroy(rt);
    return st;
}

void bl_runtime_destroy(bl_runtime_t *rt)
{
    /* Destroying NULL is a no-op. After a timeout, requests may still be
     * pending on the runtime's communicators and buffers, so the runtime is
     * leaked whole instead of freed (see bl_trainer_destroy). */
    if (rt == NULL || rt->gave_up) {
        return;
    }
    bl_device_close(rt);
    if (rt->rollcall != MPI_COMM_NULL) {
        MPI_Comm_free(&rt->rollcall);
    }
    if (rt->rollcall_answers != MPI_COMM_NULL) {
        MPI_Comm_free(&rt->rollcall_answers);
    }
    if (rt->comm != MPI_COMM_NULL) {
        MPI_Comm_free(&rt->comm);
    }
    bl_allocator_t a = rt->cfg.allocator;
    bl_mem_free(&a, rt);
}

const char *bl_last_error(const bl_runtime_t *rt)
{
    return rt == NULL ? "" : rt->err.msg;
}

int bl_runtime_rank(const bl_runtime_t *rt)
{
    return rt == NULL ? -1 : rt->rank;
}

int bl_runtime_size(const bl_runtime_t *rt)
{
    return rt == NULL ? 0 : rt->size;
}

bl_status_t bl_runtime_any(bl_runtime_t *rt, int mine, int *any)
{
    if (rt == NULL || any == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    int local = mine != 0;
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iallreduce(&local, any, 1, MPI_INT, MPI_MAX, rt->comm, &req);
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(rt, rc, "MPI_Iallreduce of a stop flag");
    }
    return bl_wait_collective(rt, &req, "the all-reduce of the stop flag", rt->comm);
}
