/* Spans: an array reserved as address space for its whole length, of which
 * only a held window has memory. A pipeline stage keeps the model's arrays
 * in spans, so that every layer keeps its offset (every pointer into the
 * arrays stays valid) while the stage pays memory only for its own layers.
 *
 * The reservation is anonymous, private and PROT_NONE, so it costs neither
 * memory nor commit charge: a read or write outside the held window faults
 * at once instead of reading another stage's stale values. The held window
 * is rounded out to whole pages, so a neighbour's first or last elements may
 * share a page with it. Memory given back reads as zeros when it is held
 * again, like fresh memory. Linux only (mmap, mprotect, madvise). */
#ifndef BL_SPAN_H
#define BL_SPAN_H

#include <stddef.h>

typedef struct bl_span {
    unsigned char *base; /* the reservation, page-aligned; NULL when there is none */
    size_t nbytes;       /* the bytes asked for */
    size_t reserved;     /* nbytes rounded up to whole pages */
    size_t lo, hi;       /* the held pages' bounds in bytes, page-aligned; lo == hi: none */
    size_t held;         /* the bytes of the held pages (hi − lo for one window) */
} bl_span_t;

/* A byte range [lo, hi) of a span. */
typedef struct bl_span_range {
    size_t lo, hi;
} bl_span_range_t;

/* Reserves nbytes (> 0) of address space with nothing held. Returns 0, or -1
 * with errno set (s is then zeroed). */
int bl_span_reserve(bl_span_t *s, size_t nbytes);

/* Makes the held window the smallest run of pages that covers both the held
 * window and the bytes [lo, hi) (lo <= hi <= nbytes; an empty range adds
 * nothing). Held bytes keep their values, and newly held ones read as zeros
 * (or their old values, where the kernel still had them). Returns 0, or -1
 * with errno set and the window unchanged. */
int bl_span_widen(bl_span_t *s, size_t lo, size_t hi);

/* Makes the held window the pages that cover exactly [lo, hi) (lo <= hi <=
 * nbytes; empty: none), widening first where needed, and gives every other
 * page's memory back to the system. Bytes held before and after keep their
 * values. Returns 0, or -1 with errno set (the window may then be wider than
 * asked, never narrower). */
int bl_span_hold(bl_span_t *s, size_t lo, size_t hi);

/* The most ranges one call below takes. */
#define BL_SPAN_MAX_RANGES 512

/* Makes the held pages exactly those that cover the union of ranges[0 ..
 * count) (each lo <= hi <= nbytes; in any order, overlapping or empty), and
 * gives every other page's memory back: a model whose part lies in several
 * pieces of one array (a GPT-2 stage's slices of every tensor) holds them
 * all. Bytes held before and after keep their values; newly held ones read
 * as zeros. At most BL_SPAN_MAX_RANGES ranges. Returns 0, or -1 with errno
 * set: EINVAL for bad ranges (nothing changed), or the system's refusal,
 * after which every page has been given back and nothing is held. */
int bl_span_hold_ranges(bl_span_t *s, const bl_span_range_t *ranges, int count);

/* The bytes that holding ranges[0 .. count) takes: their union rounded out
 * to whole pages, as bl_span_hold_ranges holds it (0 for bad ranges). Pure:
 * a memory account reads it before anything is held. */
size_t bl_span_ranges_bytes(const bl_span_range_t *ranges, int count);

/* Returns the bytes of memory held (page-rounded). */
size_t bl_span_held_bytes(const bl_span_t *s);

/* Unmaps the reservation and zeroes s; a zeroed s is fine. */
void bl_span_release(bl_span_t *s);

#endif /* BL_SPAN_H */
