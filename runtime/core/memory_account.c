/* Memory accounting (memory_account.h): formatting, the cgroup's limit, and
 * the start-up report and check over every rank. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory_account.h"
#include "wait.h"

/* What each rank sends in the check's all-gather: its account, and its limit
 * with where the limit came from (0: none, 1: the config, 2: the cgroup). */
typedef struct mem_record {
    bl_mem_account_t account;
    double limit;
    int source;
} mem_record_t;

/* A cgroup limit of 2^60 bytes or more means none (v1 writes about 2^63). */
#define BL_MEM_NO_LIMIT 1152921504606846976.0

double bl_mem_account_total(const bl_mem_account_t *a)
{
    return a->params + a->grads + a->optimizer + a->activations + a->other;
}

void bl_mem_format_bytes(double nbytes, char *buf, size_t n)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n == 0) {
        return;
    }
    if (nbytes < 1024.0) {
        snprintf(buf, n, "%.0f B", nbytes);
        return;
    }
    int u = 0;
    double v = nbytes / 1024.0;
    while (v >= 1024.0 && u < 3) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, n, "%.1f %s", v, units[u]);
}

void bl_mem_account_format(const bl_mem_account_t *a, char *buf, size_t n)
{
    char p[32], g[32], o[32], act[32], other[32], total[32];
    bl_mem_format_bytes(a->params, p, sizeof p);
    bl_mem_format_bytes(a->grads, g, sizeof g);
    bl_mem_format_bytes(a->optimizer, o, sizeof o);
    bl_mem_format_bytes(a->activations, act, sizeof act);
    bl_mem_format_bytes(a->other, other, sizeof other);
    bl_mem_format_bytes(bl_mem_account_total(a), total, sizeof total);
    if (a->other > 0.0) {
        snprintf(buf, n, "params %s, grads %s, optimizer %s, activations %s, other %s; total %s", p,
                 g, o, act, other, total);
    } else {
        snprintf(buf, n, "params %s, grads %s, optimizer %s, activations %s; total %s", p, g, o,
                 act, total);
    }
}

int bl_mem_read_cgroup_limit(const char *path, double *nbytes)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    char text[64] = "";
    int got = fgets(text, sizeof text, f) != NULL;
    fclose(f);
    if (!got) {
        return -1;
    }
    text[strcspn(text, "\n")] = '\0';
    if (strcmp(text, "max") == 0) {
        return 0;
    }
    /* A whole decimal number of bytes, nothing before or after it. */
    if (text[0] < '0' || text[0] > '9') {
        return -1;
    }
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || strspn(text, "0123456789") != strlen(text)) {
        return -1;
    }
    if (v >= BL_MEM_NO_LIMIT) {
        return 0;
    }
    *nbytes = v;
    return 1;
}

/* Reads the limit of this process's cgroup: v2's memory.max of the cgroup
 * that /proc/self/cgroup names ("0::/path"), then the one at the root of
 * /sys/fs/cgroup (a container's own cgroup), then v1's limit_in_bytes of the
 * memory cgroup that /proc/self/cgroup names ("N:memory:/path"), then the
 * one at the v1 hierarchy's root. Returns 0 when none is set. */
static double cgroup_limit(bl_runtime_t *rt)
{
    char paths[4][512];
    char v2[400] = "", v1[400] = "";
    int count = 0;
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f != NULL) {
        char line[400];
        while (fgets(line, sizeof line, f) != NULL) {
            line[strcspn(line, "\n")] = '\0';
            const char *memory = strstr(line, ":memory:");
            if (strncmp(line, "0::", 3) == 0) {
                snprintf(v2, sizeof v2, "%s", line + 3);
            } else if (memory != NULL) {
                snprintf(v1, sizeof v1, "%s", memory + 8);
            }
        }
        fclose(f);
    }
    if (v2[0] == '/') {
        snprintf(paths[count++], sizeof paths[0], "/sys/fs/cgroup%s/memory.max", v2);
    }
    snprintf(paths[count++], sizeof paths[0], "/sys/fs/cgroup/memory.max");
    if (v1[0] == '/' && v1[1] != '\0') {
        snprintf(paths[count++], sizeof paths[0], "/sys/fs/cgroup/memory%s/memory.limit_in_bytes",
                 v1);
    }
    snprintf(paths[count++], sizeof paths[0], "/sys/fs/cgroup/memory/memory.limit_in_bytes");
    for (int i = 0; i < count; i++) {
        double v = 0.0;
        int r = bl_mem_read_cgroup_limit(paths[i], &v);
        if (r == 1 && v > 0.0) {
            bl_log(rt, BL_LOG_DEBUG, "memory: the cgroup's limit is %.0f bytes (%s)", v, paths[i]);
            return v;
        }
        if (r < 0) {
            bl_log(rt, BL_LOG_DEBUG, "memory: %s holds no limit that can be read; ignored",
                   paths[i]);
        }
    }
    return 0.0;
}

double bl_mem_process_limit(bl_runtime_t *rt, double config_limit, const char **source)
{
    if (config_limit > 0.0) {
        if (source != NULL) {
            *source = "--mem-limit";
        }
        return config_limit;
    }
    double v = cgroup_limit(rt);
    if (source != NULL) {
        *source = v > 0.0 ? "the cgroup's memory.max" : "none";
    }
    return v;
}

/* Writes rank 0's JSON member over every rank's record, or NULL without
 * memory. */
static char *records_json(bl_runtime_t *rt, const mem_record_t *all, int ranks)
{
    const size_t per_rank = 256;
    size_t cap = 16 + (size_t)ranks * per_rank;
    char *json = bl_mem_alloc(bl_rt_allocator(rt), cap);
    if (json == NULL) {
        return NULL;
    }
    size_t used = (size_t)snprintf(json, cap, "\"memory\":[");
    for (int r = 0; r < ranks && used < cap; r++) {
        const bl_mem_account_t *a = &all[r].account;
        used +=
            (size_t)snprintf(json + used, cap - used,
                             "%s{\"rank\":%d,\"params\":%.0f,\"grads\":%.0f,\"optimizer\":%.0f,"
                             "\"activations\":%.0f,\"other\":%.0f,\"total\":%.0f,\"limit\":%.0f}",
                             r == 0 ? "" : ",", r, a->params, a->grads, a->optimizer,
                             a->activations, a->other, bl_mem_account_total(a), all[r].limit);
    }
    if (used < cap) {
        snprintf(json + used, cap - used, "]");
    }
    return json;
}

bl_status_t bl_mem_account_check(bl_runtime_t *rt, const bl_mem_account_t *mine,
                                 double config_limit, char **json)
{
    const bl_allocator_t *alloc = bl_rt_allocator(rt);
    if (json != NULL) {
        *json = NULL;
    }
    mem_record_t me = {.account = *mine};
    const char *source = NULL;
    me.limit = bl_mem_process_limit(rt, config_limit, &source);
    me.source = config_limit > 0.0 ? 1 : me.limit > 0.0 ? 2 : 0;
    me.account.largest[sizeof me.account.largest - 1] = '\0';
    mem_record_t *all = bl_mem_array(alloc, (size_t)rt->size, sizeof *all);
    if (all == NULL) {
        return bl_agree(rt, bl_fail(rt, BL_ERR_NO_MEM, "no memory for the memory report"),
                        BL_ERR_NO_MEM, "the memory report");
    }
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iallgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, rt->comm,
                            &req);
    bl_status_t st =
        bl_collective_posted(rt, rc, &req, "the all-gather of the memory report", rt->comm);
    if (st != BL_OK) {
        bl_mem_free(alloc, all);
        return st;
    }
    char line[256];
    int over = -1, over_count = 0;
    for (int r = 0; r < rt->size; r++) {
        const double total = bl_mem_account_total(&all[r].account);
        bl_mem_account_format(&all[r].account, line, sizeof line);
        bl_log(rt, BL_LOG_INFO, "memory: rank %d: %s", r, line);
        if (all[r].limit > 0.0 && total > all[r].limit) {
            over = over < 0 ? r : over;
            over_count++;
        }
    }
    if (json != NULL && rt->rank == 0) {
        *json = records_json(rt, all, rt->size);
    }
    if (over >= 0) {
        const mem_record_t *o = &all[over];
        char total[32], limit[32], largest[32], others[64] = "";
        bl_mem_format_bytes(bl_mem_account_total(&o->account), total, sizeof total);
        bl_mem_format_bytes(o->limit, limit, sizeof limit);
        bl_mem_format_bytes(o->account.largest_bytes, largest, sizeof largest);
        if (over_count > 1) {
            snprintf(others, sizeof others, " (and %d more rank%s over %s limit)", over_count - 1,
                     over_count > 2 ? "s" : "", over_count > 2 ? "their" : "its");
        }
        st = bl_fail(rt, BL_ERR_NO_MEM,
                     "rank %d: %s of parameters, gradients, optimizer state and activations "
                     "exceed the memory limit %s (%s); the largest layer is %s: %s%s",
                     over, total, limit, o->source == 1 ? "--mem-limit" : "the cgroup's memory.max",
                     o->account.largest, largest, others);
        if (json != NULL) {
            bl_mem_free(alloc, *json);
            *json = NULL;
        }
    }
    bl_mem_free(alloc, all);
    return st;
}
