/* The controllers' state in a checkpoint (policy_state.h). */
#include "policy_state.h"

#include <limits.h>
#include <string.h>

bl_status_t bl_policy_state_collect(bl_runtime_t *rt, const bl_policy_t *shards,
                                    const bl_restage_t *stages, const bl_control_windows_t *w,
                                    unsigned char **out, size_t *n)
{
    size_t n1 = bl_policy_state_bytes(shards), n2 = bl_restage_state_bytes(stages);
    size_t doubles = w->shard_count + w->stage_count;
    size_t n3 = 32 + doubles * sizeof(double);
    *out = NULL;
    *n = 0;
    unsigned char *b = bl_mem_array(bl_rt_allocator(rt), 24 + n1 + n2 + n3, 1);
    if (b == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for %zu bytes of policy state", n1 + n2 + n3);
    }
    unsigned char *at = b;
    bl_le_put64(at, n1);
    bl_policy_state_save(shards, at + 8);
    at += 8 + n1;
    bl_le_put64(at, n2);
    bl_restage_state_save(stages, at + 8);
    at += 8 + n2;
    bl_le_put64(at, n3);
    bl_le_put64(at + 8, (uint64_t)w->ranks);
    bl_le_put64(at + 16, (uint64_t)w->layers);
    bl_le_put64(at + 24, w->shard_count);
    bl_le_put64(at + 32, w->stage_count);
    at += 40;
    if (w->shard_count > 0) {
        memcpy(at, w->shard, w->shard_count * sizeof(double));
    }
    if (w->stage_count > 0) {
        memcpy(at + w->shard_count * sizeof(double), w->stage, w->stage_count * sizeof(double));
    }
    *out = b;
    *n = 24 + n1 + n2 + n3;
    return BL_OK;
}

/* Returns the next part of bytes[*pos, n), with its length in *len, and
 * advances *pos; or NULL when the part's length runs past the end. */
static const unsigned char *next_part(const unsigned char *bytes, size_t n, size_t *pos,
                                      size_t *len)
{
    if (n - *pos < 8) {
        return NULL;
    }
    uint64_t k = bl_le_get64(bytes + *pos);
    *pos += 8;
    if (k > n - *pos) {
        return NULL;
    }
    const unsigned char *part = bytes + *pos;
    *len = (size_t)k;
    *pos += (size_t)k;
    return part;
}

/* Says in an info line what became of one policy's part: loaded, or why not. */
static void restore_part(bl_runtime_t *rt, const char *which, const char *path, int have_policy,
                         size_t len, int loaded, const char *err)
{
    if (loaded) {
        bl_log(rt, BL_LOG_INFO, "resume: the %s policy goes on from its saved state", which);
    } else if (len == 0 && have_policy) {
        bl_log(rt, BL_LOG_INFO, "resume: %s holds no %s policy state; it starts afresh", path,
               which);
    } else if (len > 0 && !have_policy) {
        bl_log(rt, BL_LOG_INFO, "resume: %s holds %s policy state that this run does not use", path,
               which);
    } else if (len > 0) {
        bl_log(rt, BL_LOG_INFO, "resume: the %s policy starts afresh: %s", which, err);
    }
}

/* Reads the windows part (n3 bytes at p3) into *w; returns 1, or 0 when the
 * part is malformed. */
static int read_windows(const unsigned char *p3, size_t n3, bl_control_windows_t *w)
{
    if (n3 < 32) {
        return 0;
    }
    uint64_t ranks = bl_le_get64(p3), layers = bl_le_get64(p3 + 8);
    uint64_t shard = bl_le_get64(p3 + 16), stage = bl_le_get64(p3 + 24);
    size_t room = (n3 - 32) / sizeof(double);
    if (ranks > INT_MAX || layers > INT_MAX || shard > room || stage > room - shard ||
        (n3 - 32) != (shard + stage) * sizeof(double)) {
        return 0;
    }
    w->ranks = (int)ranks;
    w->layers = (int)layers;
    w->shard = shard > 0 ? p3 + 32 : NULL;
    w->shard_count = (size_t)shard;
    w->stage = stage > 0 ? p3 + 32 + shard * sizeof(double) : NULL;
    w->stage_count = (size_t)stage;
    return 1;
}

void bl_policy_state_restore(bl_runtime_t *rt, bl_policy_t *shards, bl_restage_t *stages,
                             const unsigned char *bytes, size_t n, const char *path,
                             bl_control_windows_t *w)
{
    size_t pos = 0, n1 = 0, n2 = 0, n3 = 0;
    memset(w, 0, sizeof *w);
    const unsigned char *p1 = bytes != NULL ? next_part(bytes, n, &pos, &n1) : NULL;
    const unsigned char *p2 = p1 != NULL ? next_part(bytes, n, &pos, &n2) : NULL;
    /* Checkpoints from before the windows were saved end after part 2. */
    const unsigned char *p3 = p2 != NULL && pos < n ? next_part(bytes, n, &pos, &n3) : NULL;
    if (bytes != NULL && (p2 == NULL || pos != n || (p3 != NULL && !read_windows(p3, n3, w)))) {
        memset(w, 0, sizeof *w);
        bl_log(rt, BL_LOG_WARN,
               "resume: %s: its policy state (%zu bytes) is malformed; the "
               "policies start afresh",
               path, n);
        return;
    }
    char err[256] = "";
    int loaded =
        shards != NULL && n1 > 0 && bl_policy_state_load(shards, p1, n1, err, sizeof err) == 0;
    restore_part(rt, "shard", path, shards != NULL, n1, loaded, err);
    loaded =
        stages != NULL && n2 > 0 && bl_restage_state_load(stages, p2, n2, err, sizeof err) == 0;
    restore_part(rt, "stage", path, stages != NULL, n2, loaded, err);
}
