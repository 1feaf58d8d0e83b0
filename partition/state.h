/* A policy's learned state as bytes, for checkpoints: one visitor per
 * object walks its fields in a fixed order, and the same walk counts,
 * saves or loads them, so the three can never disagree on the layout.
 * Bytes are the host's (checkpoints refuse hosts of the other byte order).
 * Internal to partition/. */
#ifndef BL_PARTITION_STATE_H
#define BL_PARTITION_STATE_H

#include <stddef.h>

#include "policy.h" /* bl_part_allocator_t, bl_estimator_t */

typedef struct bl_part_state {
    unsigned char *out;      /* saving: the bytes go here */
    const unsigned char *in; /* loading: the bytes come from here */
    size_t len;              /* loading: in's length */
    size_t pos;              /* bytes walked so far (counting: neither out nor in) */
    int short_input;         /* loading: in ended before the walk */
} bl_part_state_t;

/* Walks one field of n bytes at field: copies it out, in, or only counts. */
void bl_part_state_field(bl_part_state_t *s, void *field, size_t n);

/* The estimator's walk (estimator.c): returns 0 when a loaded header does
 * not match e (another rank count). Transient fields (the last update's
 * changes) are not walked. */
int bl_part_estimator_walk(bl_estimator_t *e, bl_part_state_t *s);
/* Whether a loaded estimator's values are usable: finite, speeds >= 0. */
int bl_part_estimator_valid(const bl_estimator_t *e);

/* Walks a header field that must match: when loading, *value must equal
 * what the object has (a count, a kind); returns 0 when it does not. */
int bl_part_state_check(bl_part_state_t *s, int value);

/* An object's walk: returns 0 when a loaded header does not match obj. */
typedef int (*bl_part_walk_fn)(void *obj, bl_part_state_t *s);
/* Whether obj's loaded fields are usable (indices in range, finite). */
typedef int (*bl_part_valid_fn)(const void *obj);

/* The bytes obj's walk takes. */
size_t bl_part_state_bytes(bl_part_walk_fn walk, const void *obj);
/* Saves obj into buf (bl_part_state_bytes of them). */
void bl_part_state_save(bl_part_walk_fn walk, const void *obj, void *buf);

/* Loads obj from buf[0, n) all or nothing: on any failure obj is as it
 * was (its state is kept aside through a's hooks while loading). 0, or -1
 * with the reason in err: "<what>: N bytes are not the state of this
 * policy (<self>)" when kind, counts or length differ, "<what>: values out
 * of range", or no memory. */
int bl_part_state_load(bl_part_walk_fn walk, bl_part_valid_fn valid, void *obj, const void *buf,
                       size_t n, const bl_part_allocator_t *a, const char *what, const char *self,
                       char *err, size_t errlen);

#endif /* BL_PARTITION_STATE_H */
