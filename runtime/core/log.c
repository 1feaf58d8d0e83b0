/* The logger. A line is logged when its level passes the level filter (set
 * from the config or $BALLAST_LOG) and its rank passes the rank filter: only
 * rank 0 logs unless log_all_ranks is set, but errors are logged on every
 * rank. Every line goes to one sink, the config's log_fn or else stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "runtime_impl.h"

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Returns the level that text names, spelt as in $BALLAST_LOG (in any
 * case; "warning" also means warn), or -1 when the name is unknown. */
int bl_log_level_parse(const char *text)
{
    for (int i = 0; i <= BL_LOG_DEBUG; i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            return i;
        }
    }
    if (strcasecmp(text, "warning") == 0) {
        return BL_LOG_WARN;
    }
    return -1;
}

static void log_line(const bl_runtime_t *rt, bl_log_level_t level, const char *line)
{
    if (rt->cfg.log_fn != NULL) {
        rt->cfg.log_fn(level, rt->rank, line, rt->cfg.log_arg);
        return;
    }
    fprintf(stderr, "ballast[%d] %s: %s\n", rt->rank, level_names[level], line);
    fflush(stderr);
}

static void log_v(const bl_runtime_t *rt, bl_log_level_t level, const char *fmt, va_list ap)
{
    if (rt == NULL || (int)level < BL_LOG_ERROR || (int)level > rt->cfg.log_level) {
        return;
    }
    if (level != BL_LOG_ERROR && rt->rank != 0 && !rt->cfg.log_all_ranks) {
        return;
    }
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    log_line(rt, level, line);
}

void bl_log(const bl_runtime_t *rt, bl_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v(rt, level, fmt, ap);
    va_end(ap);
}

bl_status_t bl_fail(bl_runtime_t *rt, bl_status_t status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt->err.msg, sizeof rt->err.msg, fmt, ap);
    va_end(ap);
    rt->err.status = status;
    bl_log(rt, BL_LOG_DEBUG, "%s: %s", bl_status_string(status), rt->err.msg);
    return status;
}

bl_status_t bl_fail_from(bl_runtime_t *rt, const bl_error_t *err)
{
    return bl_fail(rt, err->status, "%s", err->msg);
}

bl_status_t bl_fail_mpi(bl_runtime_t *rt, int mpi_err, const char *what)
{
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(mpi_err, text, &len) != MPI_SUCCESS) {
        snprintf(text, sizeof text, "MPI error code %d", mpi_err);
    }
    return bl_fail(rt, BL_ERR_MPI, "%s failed on rank %d: %s", what, rt->rank, text);
}
