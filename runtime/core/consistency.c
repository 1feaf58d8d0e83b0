/* The start-up consistency check (consistency.h): one all-gather of every
 * rank's named values, each of which is compared against rank 0's. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "consistency.h"
#include "wait.h"

#define MAX_FIELDS 64

uint64_t bl_digest(const void *bytes, size_t nbytes)
{
    /* crc32_z takes a size_t length, so any array is digested in one call. */
    uint64_t crc = crc32_z(0L, (const Bytef *)bytes, nbytes);
    return bl_seed_mix(crc, (uint64_t)nbytes);
}

uint64_t bl_float_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static void format_value(bl_check_kind_t kind, uint64_t value, char *out, size_t n)
{
    if (kind == BL_CHECK_FLOAT) {
        uint32_t bits = (uint32_t)value;
        float f;
        memcpy(&f, &bits, sizeof f);
        snprintf(out, n, "%.9g", (double)f);
    } else if (kind == BL_CHECK_DIGEST) {
        snprintf(out, n, "digest %016" PRIx64, value);
    } else {
        snprintf(out, n, "%" PRIu64, value);
    }
}

bl_status_t bl_check_same_on_all_ranks(bl_runtime_t *rt, const char *what,
                                       const bl_check_field_t *fields, int count)
{
    if (count < 0 || count > MAX_FIELDS) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "%s: %d fields to check; at most %d", what, count,
                       MAX_FIELDS);
    }
    if (rt->size == 1) {
        return BL_OK;
    }
    uint64_t mine[MAX_FIELDS];
    for (int i = 0; i < count; i++) {
        mine[i] = fields[i].value;
    }
    uint64_t *all =
        bl_mem_array(bl_rt_allocator(rt), (size_t)rt->size * (size_t)count, sizeof *all);
    if (all == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "%s: no memory to compare %d ranks", what, rt->size);
    }
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iallgather(mine, count, MPI_UINT64_T, all, count, MPI_UINT64_T, rt->comm, &req);
    bl_status_t st = bl_collective_posted(rt, rc, &req, what, rt->comm);
    if (st != BL_OK) {
        goto done;
    }
    /* Every rank sees the same table, so every rank reports the same
     * mismatch and returns the same status, and no rank goes on alone. */
    for (int r = 1; r < rt->size; r++) {
        for (int i = 0; i < count; i++) {
            uint64_t theirs = all[(size_t)r * (size_t)count + (size_t)i];
            uint64_t root = all[i];
            if (theirs == root) {
                continue;
            }
            char mine_text[40], root_text[40];
            format_value(fields[i].kind, theirs, mine_text, sizeof mine_text);
            format_value(fields[i].kind, root, root_text, sizeof root_text);
            st = bl_fail(rt, BL_ERR_MISMATCH,
                         "%s: rank %d differs from rank 0 in %s (%s vs %s); every rank must run "
                         "the same configuration and data",
                         what, r, fields[i].name, mine_text, root_text);
            goto done;
        }
    }
done:
    bl_mem_free(bl_rt_allocator(rt), all);
    return st;
}
