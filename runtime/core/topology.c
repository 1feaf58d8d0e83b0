/* The topology module (topology.h). It learns each rank's cpuset and NUMA
 * node with hwloc, chooses the BLAS threads from the cores that a rank owns,
 * and logs one summary line per node, with a warning when a node's ranks run
 * more threads than it has cores. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime_impl.h"
#include "cpu_quota.h"
#include "topology.h"

/* ---- One place, plain hwloc --------------------------------------------- */

/* Returns the FNV-1a hash of the indices of the set's PUs. Equal sets give
 * equal hashes, so ranks compare whole sets even when their text was cut. */
static uint64_t cpuset_hash(hwloc_const_cpuset_t set)
{
    uint64_t h = 14695981039346656037ULL;
    int pu;
    hwloc_bitmap_foreach_begin(pu, set)
    {
        unsigned v = (unsigned)pu;
        for (int byte = 0; byte < 4; byte++) {
            h ^= (v >> (8 * byte)) & 0xffu;
            h *= 1099511628211ULL;
        }
    }
    hwloc_bitmap_foreach_end();
    return h;
}

/* Writes the set into buf as hwloc's list text (e.g. "0-3,8"), which ends in
 * "..." when it was cut; the text is "?" when hwloc fails. */
static void cpuset_text(hwloc_const_cpuset_t set, char *buf, size_t nbytes)
{
    int n = hwloc_bitmap_list_snprintf(buf, nbytes, set);
    if (n < 0) {
        snprintf(buf, nbytes, "?");
    } else if ((size_t)n >= nbytes) {
        memcpy(buf + nbytes - 4, "...", 4);
    }
}

bl_status_t bl_place_describe(hwloc_topology_t topo, hwloc_const_cpuset_t binding,
                              bl_rank_place_t *out, bl_error_t *err)
{
    hwloc_bitmap_t set = NULL;
    bl_status_t st = BL_OK;

    if (topo == NULL || out == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_place_describe: %s is NULL",
                            topo == NULL ? "the topology" : "the output");
    }
    hwloc_const_cpuset_t machine = hwloc_topology_get_topology_cpuset(topo);
    set = hwloc_bitmap_alloc();
    if (set == NULL || (binding == NULL ? hwloc_bitmap_copy(set, machine)
                                        : hwloc_bitmap_and(set, binding, machine)) != 0) {
        st = bl_error_set(err, BL_ERR_NO_MEM, "hwloc could not allocate a cpuset");
        goto done;
    }
    if (hwloc_bitmap_iszero(set)) {
        st = bl_error_set(err, BL_ERR_INVALID_ARG, "the binding holds no PU of the topology");
        goto done;
    }

    memset(out, 0, sizeof *out);
    out->pus_total = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    out->pus_bound = hwloc_bitmap_weight(set);
    int cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    if (cores > 0) {
        out->cores_total = cores;
        hwloc_obj_t core = NULL;
        while ((core = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_CORE, core)) != NULL) {
            if (hwloc_bitmap_intersects(core->cpuset, set)) {
                out->cores_bound++;
            }
        }
    } else { /* with no core level (on some platforms), each PU is a core */
        out->cores_total = out->pus_total;
        out->cores_bound = out->pus_bound;
    }

    /* The rank's NUMA node is the first one (in logical order) whose cpus
     * hold the whole set. Memory tiers that share those cpus (e.g. DRAM and
     * HBM) come after the plain node in hwloc's order. No node holds a set
     * that spans two nodes, so such a set keeps -1. */
    out->numa_node = -1;
    hwloc_obj_t numa = NULL;
    while ((numa = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_NUMANODE, numa)) != NULL) {
        if (numa->cpuset != NULL && hwloc_bitmap_isincluded(set, numa->cpuset)) {
            if (numa->os_index <= (unsigned)INT_MAX) {
                out->numa_node = (int)numa->os_index;
            }
            break;
        }
    }

    out->bound = !hwloc_bitmap_isequal(set, machine);
    cpuset_text(set, out->cpuset, sizeof out->cpuset);
    out->cpuset_hash = cpuset_hash(set);

done:
    hwloc_bitmap_free(set);
    return st;
}

bl_status_t bl_place_probe(bl_rank_place_t *out, bl_error_t *err)
{
    hwloc_topology_t topo = NULL;
    hwloc_bitmap_t binding = NULL;
    bl_status_t st = BL_OK;

    if (out == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_place_probe: the output is NULL");
    }
    if (hwloc_topology_init(&topo) != 0) {
        topo = NULL;
        st = bl_error_set(err, BL_ERR_NO_MEM, "hwloc_topology_init failed: %s", strerror(errno));
        goto done;
    }
    if (hwloc_topology_load(topo) != 0) {
        st = bl_error_set(err, BL_ERR_IO, "hwloc could not read this machine's topology: %s",
                          strerror(errno));
        goto done;
    }
    binding = hwloc_bitmap_alloc();
    if (binding == NULL) {
        st = bl_error_set(err, BL_ERR_NO_MEM, "hwloc could not allocate a cpuset");
        goto done;
    }
    /* The binding is read for every thread (OpenBLAS may have started its
     * threads). A binding that cannot be read, or that lies outside what
     * hwloc sees, reads as the whole machine. */
    hwloc_const_cpuset_t machine = hwloc_topology_get_topology_cpuset(topo);
    int known = hwloc_get_cpubind(topo, binding, HWLOC_CPUBIND_PROCESS) == 0 &&
                hwloc_bitmap_intersects(binding, machine);
    st = bl_place_describe(topo, known ? binding : NULL, out, err);

done:
    hwloc_bitmap_free(binding);
    if (topo != NULL) {
        hwloc_topology_destroy(topo);
    }
    return st;
}

int bl_threads_default(const bl_rank_place_t *p, int ranks_sharing_cpuset)
{
    if (p == NULL) {
        return 1;
    }
    int sharing = ranks_sharing_cpuset < 1 ? 1 : ranks_sharing_cpuset;
    int threads = p->cores_bound / sharing;
    return threads < 1 ? 1 : threads;
}

/* ---- Every rank of the node, over MPI ----------------------------------- */

/* What each rank tells the other ranks of its node. It is sent as bytes,
 * because the ranks of one node run the same binary on the same machine. */
typedef struct node_entry {
    int world_rank;
    int requested; /* that rank's requested_threads */
    int known;     /* 0: the rank could not read its topology */
    double quota;  /* the cores' worth of CPU time its cgroup allows (cpu_quota.h); 0: no limit */
    bl_rank_place_t place;
} node_entry_t;

/* The summary lines have a fixed length, so that a leader sends them as
 * one message. */
enum { LINE_NBYTES = 1024, SUMMARY_TAG = 0x7090 };

typedef struct node_summary {
    char node[LINE_NBYTES]; /* the info line */
    char warn[LINE_NBYTES]; /* the warning, "" when none */
} node_summary_t;

/* Returns the BLAS threads of entry i's rank, as that rank chooses them. */
static int entry_threads(const node_entry_t *e, int count, int i)
{
    if (e[i].requested > 0) {
        return e[i].requested;
    }
    if (!e[i].known) {
        return 1;
    }
    int sharing = 0;
    for (int j = 0; j < count; j++) {
        if (e[j].known && e[j].place.cpuset_hash == e[i].place.cpuset_hash &&
            strcmp(e[j].place.cpuset, e[i].place.cpuset) == 0) {
            sharing++;
        }
    }
    return bl_threads_default(&e[i].place, sharing);
}

/* A line that is filled piece by piece. A piece that does not fit is
 * dropped, and the line then ends in "..." (room for it is always kept). */
typedef struct line {
    char *buf;
    size_t len;
    int cut;
} line_t;

static void line_add(line_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void line_add(line_t *l, const char *fmt, ...)
{
    if (l->cut) {
        return;
    }
    size_t room = LINE_NBYTES - l->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->buf + l->len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n + 4 > room) {
        memcpy(l->buf + l->len, "...", 4);
        l->len += 3;
        l->cut = 1;
        return;
    }
    l->len += (size_t)n;
}

static const char *plural(int n)
{
    return n == 1 ? "" : "s";
}

/* Writes the node's info line into s and, when the node's ranks run more
 * threads than it has cores, the warning (else an empty warning). */
static void summarise_node(const char *host, const node_entry_t *e, int count, node_summary_t *s)
{
    int cores = 0, pus = 0, threads_sum = 0, unbound = 0;
    for (int i = 0; i < count; i++) {
        unbound += !e[i].known || !e[i].place.bound;
        if (e[i].place.cores_total > cores) {
            cores = e[i].place.cores_total;
            pus = e[i].place.pus_total;
        }
        threads_sum += entry_threads(e, count, i);
    }

    line_t l = {.buf = s->node, .len = 0, .cut = 0};
    s->node[0] = '\0';
    line_add(&l, "node %s: %d rank%s on %d core%s (%d PU%s);", host, count, plural(count), cores,
             plural(cores), pus, plural(pus));
    for (int i = 0; i < count; i++) {
        const bl_rank_place_t *p = &e[i].place;
        const char *sep = i == 0 ? "" : ",";
        int threads = entry_threads(e, count, i);
        if (!e[i].known) {
            line_add(&l, "%s rank %d cpus ? numa - threads %d", sep, e[i].world_rank, threads);
        } else if (p->numa_node < 0) {
            line_add(&l, "%s rank %d cpus %s%s numa - threads %d", sep, e[i].world_rank, p->cpuset,
                     p->bound ? "" : " (unbound)", threads);
        } else {
            line_add(&l, "%s rank %d cpus %s%s numa %d threads %d", sep, e[i].world_rank, p->cpuset,
                     p->bound ? "" : " (unbound)", p->numa_node, threads);
        }
        if (e[i].quota > 0.0) {
            line_add(&l, " cpu quota %.3g core%s", e[i].quota, e[i].quota == 1.0 ? "" : "s");
        }
    }

    s->warn[0] = '\0';
    /* The first rank held below its threads: it computes in bursts. */
    for (int i = 0; i < count; i++) {
        const int threads = entry_threads(e, count, i);
        if (e[i].quota > 0.0 && e[i].quota < (double)threads) {
            snprintf(s->warn, sizeof s->warn,
                     "node %s: rank %d may use %.3g of a core's time (its cgroup's CPU quota) for "
                     "%d BLAS thread%s: it computes in bursts, at full speed until the quota of "
                     "each period is spent, then not at all; the telemetry's cpu_s shows what it "
                     "gets",
                     host, e[i].world_rank, e[i].quota, threads, plural(threads));
            return;
        }
    }
    if (cores > 0 && threads_sum > cores) {
        int fair = count <= cores ? cores / count : 0; /* threads per rank that fit */
        char advice[160];
        if (fair == 0) {
            snprintf(advice, sizeof advice, "start at most %d rank%s on this node", cores,
                     plural(cores));
        } else {
            snprintf(advice, sizeof advice, "use --threads %d%s%s", fair,
                     fair > 1 ? " or fewer" : "",
                     unbound > 0 ? ", and bind ranks to cores (mpirun --bind-to core)" : "");
        }
        snprintf(s->warn, sizeof s->warn,
                 "node %s: %d rank%s run %d BLAS threads on %d core%s, so they compete for "
                 "cores; %s",
                 host, count, plural(count), threads_sum, cores, plural(cores), advice);
    }
}

static void log_summary(bl_runtime_t *rt, const node_summary_t *s)
{
    bl_log(rt, BL_LOG_INFO, "%s", s->node);
    if (s->warn[0] != '\0') {
        bl_log(rt, BL_LOG_WARN, "%s", s->warn);
    }
}

/* The node leaders send their summaries to rank 0, which logs them in the
 * order of the leaders' ranks. Rank 0 receives into s, one fixed buffer,
 * and so holds one node at a time. Collective over leaders; returns BL_OK or
 * BL_ERR_MPI. */
static bl_status_t report_nodes(bl_runtime_t *rt, MPI_Comm leaders, node_summary_t *s)
{
    int lrank = 0, lsize = 0, rc;
    if ((rc = MPI_Comm_rank(leaders, &lrank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(leaders, &lsize)) != MPI_SUCCESS) {
        return bl_fail_mpi(rt, rc, "MPI_Comm_rank/size of the node leaders");
    }
    if (lrank != 0) {
        rc = MPI_Send(s, (int)sizeof *s, MPI_CHAR, 0, SUMMARY_TAG, leaders);
        return rc == MPI_SUCCESS ? BL_OK : bl_fail_mpi(rt, rc, "MPI_Send of a node summary");
    }
    /* Leader 0 is rank 0, because it has the lowest key both of its node and
     * of the leaders. */
    log_summary(rt, s);
    for (int from = 1; from < lsize; from++) {
        rc = MPI_Recv(s, (int)sizeof *s, MPI_CHAR, from, SUMMARY_TAG, leaders, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            return bl_fail_mpi(rt, rc, "MPI_Recv of a node summary");
        }
        s->node[LINE_NBYTES - 1] = '\0';
        s->warn[LINE_NBYTES - 1] = '\0';
        log_summary(rt, s);
    }
    return BL_OK;
}

bl_status_t bl_topology_setup(bl_runtime_t *rt, int requested_threads, int *threads_out)
{
    MPI_Comm node = MPI_COMM_NULL, leaders = MPI_COMM_NULL;
    node_entry_t *entries = NULL;
    bl_status_t st = BL_OK;
    int rc;

    if (rt == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (threads_out == NULL || requested_threads < 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "bl_topology_setup: %s",
                       threads_out == NULL ? "threads_out is NULL"
                                           : "requested_threads is negative");
    }

    /* A rank that cannot read its topology still takes part (with 1
     * thread), so that one odd machine does not stop the job. */
    node_entry_t mine;
    memset(&mine, 0, sizeof mine);
    mine.world_rank = rt->rank;
    mine.requested = requested_threads;
    char quota_file[256];
    mine.quota = bl_cpu_quota_cores(quota_file, sizeof quota_file);
    rt->cpu_quota = mine.quota;
    if (mine.quota > 0.0) {
        bl_log(rt, BL_LOG_DEBUG, "rank %d: a CPU quota of %.3g cores (%s)", rt->rank, mine.quota,
               quota_file);
    }
    bl_error_t perr = {0};
    mine.known = bl_place_probe(&mine.place, &perr) == BL_OK;
    if (!mine.known) {
        memset(&mine.place, 0, sizeof mine.place);
        mine.place.numa_node = -1;
        bl_log(rt, BL_LOG_WARN, "rank %d: topology unknown (%s); BLAS threads default to 1",
               rt->rank, perr.msg);
    }

    /* The ranks that share memory form one node; the key rt->rank keeps the
     * world order. */
    rc = MPI_Comm_split_type(rt->comm, MPI_COMM_TYPE_SHARED, rt->rank, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) {
        node = MPI_COMM_NULL;
        st = bl_fail_mpi(rt, rc, "MPI_Comm_split_type by node");
        goto done;
    }
    if ((rc = MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN)) != MPI_SUCCESS) {
        st = bl_fail_mpi(rt, rc, "MPI_Comm_set_errhandler on the node communicator");
        goto done;
    }
    int local_rank = 0, local_size = 0;
    if ((rc = MPI_Comm_rank(node, &local_rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(node, &local_size)) != MPI_SUCCESS) {
        st = bl_fail_mpi(rt, rc, "MPI_Comm_rank/size of the node communicator");
        goto done;
    }

    /* Every rank learns whether every rank has its table, so that a rank out
     * of memory fails the call everywhere instead of leaving a collective
     * half entered. */
    entries = bl_mem_array(bl_rt_allocator(rt), (size_t)local_size, sizeof *entries);
    int all_have = entries != NULL;
    rc = MPI_Allreduce(MPI_IN_PLACE, &all_have, 1, MPI_INT, MPI_MIN, rt->comm);
    if (rc != MPI_SUCCESS) {
        st = bl_fail_mpi(rt, rc, "MPI_Allreduce of the topology allocation");
        goto done;
    }
    if (!all_have) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "topology: %s out of memory for the node's %d ranks",
                     entries == NULL ? "this rank ran" : "another rank ran", local_size);
        goto done;
    }
    rc =
        MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, entries, (int)sizeof mine, MPI_BYTE, node);
    if (rc != MPI_SUCCESS) {
        st = bl_fail_mpi(rt, rc, "MPI_Allgather of the ranks' places on the node");
        goto done;
    }
    int threads = entry_threads(entries, local_size, local_rank);

    rc = MPI_Comm_split(rt->comm, local_rank == 0 ? 0 : MPI_UNDEFINED, rt->rank, &leaders);
    if (rc != MPI_SUCCESS) {
        leaders = MPI_COMM_NULL;
        st = bl_fail_mpi(rt, rc, "MPI_Comm_split of the node leaders");
        goto done;
    }
    if (leaders != MPI_COMM_NULL) {
        if ((rc = MPI_Comm_set_errhandler(leaders, MPI_ERRORS_RETURN)) != MPI_SUCCESS) {
            st = bl_fail_mpi(rt, rc, "MPI_Comm_set_errhandler on the leaders communicator");
            goto done;
        }
        char host[MPI_MAX_PROCESSOR_NAME] = "";
        int host_len = 0;
        if ((rc = MPI_Get_processor_name(host, &host_len)) != MPI_SUCCESS) {
            st = bl_fail_mpi(rt, rc, "MPI_Get_processor_name");
            goto done;
        }
        node_summary_t summary;
        summarise_node(host, entries, local_size, &summary);
        if ((st = report_nodes(rt, leaders, &summary)) != BL_OK) {
            goto done;
        }
    }

    if (mine.known) {
        bl_log(rt, BL_LOG_DEBUG,
               "rank %d: cpus %s (%d of %d cores, %d of %d PUs), numa %d, %d BLAS thread%s",
               rt->rank, mine.place.cpuset, mine.place.cores_bound, mine.place.cores_total,
               mine.place.pus_bound, mine.place.pus_total, mine.place.numa_node, threads,
               plural(threads));
    }
    bl_cpu_set_threads(threads);
    *threads_out = threads;

done:
    if (leaders != MPI_COMM_NULL) {
        MPI_Comm_free(&leaders);
    }
    if (node != MPI_COMM_NULL) {
        MPI_Comm_free(&node);
    }
    bl_mem_free(bl_rt_allocator(rt), entries);
    return st;
}
