/* The state walk's cursor (state.h). */
#include "state.h"

#include <string.h>

#include "alloc.h"

void bl_part_state_field(bl_part_state_t *s, void *field, size_t n)
{
    if (s->in != NULL) {
        if (s->short_input || n > s->len - s->pos) {
            s->short_input = 1;
            return;
        }
        memcpy(field, s->in + s->pos, n);
    } else if (s->out != NULL) {
        memcpy(s->out + s->pos, field, n);
    }
    s->pos += n;
}

int bl_part_state_check(bl_part_state_t *s, int value)
{
    int stored = value;
    bl_part_state_field(s, &stored, sizeof stored);
    return s->in == NULL || (!s->short_input && stored == value);
}

size_t bl_part_state_bytes(bl_part_walk_fn walk, const void *obj)
{
    bl_part_state_t s = {0};
    walk((void *)obj, &s); /* counting writes nothing */
    return s.pos;
}

void bl_part_state_save(bl_part_walk_fn walk, const void *obj, void *buf)
{
    bl_part_state_t s = {.out = buf};
    walk((void *)obj, &s); /* saving reads obj only */
}

int bl_part_state_load(bl_part_walk_fn walk, bl_part_valid_fn valid, void *obj, const void *buf,
                       size_t n, const bl_part_allocator_t *a, const char *what, const char *self,
                       char *err, size_t errlen)
{
    if (buf == NULL) {
        return bl_part_fail(err, errlen, "%s: no bytes", what);
    }
    size_t want = bl_part_state_bytes(walk, obj);
    if (n != want) {
        return bl_part_fail(err, errlen, "%s: %zu bytes are not the state of this policy (%s)",
                            what, n, self);
    }
    unsigned char *kept = bl_part_alloc(a, want, 1);
    if (kept == NULL) {
        return bl_part_fail(err, errlen, "%s: out of memory", what);
    }
    bl_part_state_save(walk, obj, kept);
    bl_part_state_t s = {.in = buf, .len = n};
    int rc = 0;
    if (!walk(obj, &s) || s.short_input) {
        rc = bl_part_fail(err, errlen, "%s: %zu bytes are not the state of this policy (%s)", what,
                          n, self);
    } else if (!valid(obj)) {
        rc = bl_part_fail(err, errlen, "%s: values out of range", what);
    }
    if (rc != 0) {
        bl_part_state_t back = {.in = kept, .len = want};
        walk(obj, &back);
    }
    bl_part_free(a, kept);
    return rc;
}
