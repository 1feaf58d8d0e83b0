/* Internal helpers that the runtime's modules share: the error records, the
 * allocation funnel, the deterministic random generator, the clock and the
 * little-endian byte helpers. This header is not installed. */
#ifndef BL_INTERNAL_H
#define BL_INTERNAL_H

#include <stddef.h>
#include <string.h>
#include <stdint.h>

#include "ballast.h"

/* The detailed cause of a failure, which the module that failed fills in. */
typedef struct bl_error {
    bl_status_t status;
    char msg[1024];
} bl_error_t;

/* Records status and a printf-style message in err (which may be NULL) and
 * returns status, so that a failure reads
 * `return bl_error_set(err, BL_ERR_IO, ...)`. */
bl_status_t bl_error_set(bl_error_t *err, bl_status_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Every allocation of the library goes through these functions. The
 * allocator a may be NULL or have NULL hooks, and then malloc and free are
 * used. The allocating functions return NULL on failure; the array functions
 * also return NULL when count * elem_nbytes overflows. A request for 0 bytes
 * still returns a unique pointer. The memory is not zeroed, except by
 * bl_mem_array_zeroed. Freeing NULL is a no-op. */
void *bl_mem_alloc(const bl_allocator_t *a, size_t nbytes);
void *bl_mem_array(const bl_allocator_t *a, size_t count, size_t elem_nbytes);
void *bl_mem_array_zeroed(const bl_allocator_t *a, size_t count, size_t elem_nbytes);
void bl_mem_free(const bl_allocator_t *a, void *ptr);
/* Gives the physical pages that lie wholly inside [ptr, ptr + nbytes) back
 * to the system (madvise MADV_DONTNEED) and keeps the addresses: for an
 * array whose contents are dead until it is rewritten in full (a model's own
 * arrays while a node-local reduction keeps the state in shared windows). A
 * later touch reads zeros (or, in a shared file mapping, the file). Returns
 * the bytes given back (0 where madvise refuses). */
size_t bl_mem_release_pages(void *ptr, size_t nbytes);

/* The SplitMix64 generator: a small counter-based generator. The same seed
 * always gives the same stream. */
typedef struct bl_rng {
    uint64_t state;
} bl_rng_t;

/* Mixes two words into one seed and returns it (the order matters). It
 * gives a seed per (run seed, epoch) or per (model seed, layer), so that one
 * stream never shifts another. */
uint64_t bl_seed_mix(uint64_t a, uint64_t b);
/* Domain tags, which are mixed into a seed before a family of streams is
 * derived from it. */
#define BL_SEED_DOMAIN_SHUFFLE 0x53485546464c45ULL /* "SHUFFLE" */
#define BL_SEED_DOMAIN_INIT    0x494e4954ULL       /* "INIT" */
#define BL_SEED_DOMAIN_SAMPLE  0x53414d504c45ULL   /* "SAMPLE" */
void bl_rng_init(bl_rng_t *r, uint64_t seed);
uint64_t bl_rng_next(bl_rng_t *r);
/* Returns a uniform float in [0, 1) with 24 random bits (exact in float32). */
float bl_rng_float(bl_rng_t *r);
/* Returns a uniform integer in [0, n) without modulo bias; n must be above
 * 0. */
uint64_t bl_rng_below(bl_rng_t *r, uint64_t n);

/* Returns the seconds on CLOCK_MONOTONIC. On Linux that clock is
 * system-wide, so its readings are comparable across the ranks of one node. */
double bl_now_seconds(void);
/* Returns the CPU seconds this process has used (CLOCK_PROCESS_CPUTIME_ID:
 * every thread's, OpenBLAS's and MPI's included); differences of two
 * readings are what a step cost the CPU, which a CPU quota caps. */
double bl_cpu_seconds(void);

/* Little-endian integers in byte buffers, as checkpoint files store them. */
static inline void bl_le_put32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        b[i] = (unsigned char)(v >> (8 * i));
    }
}

/* 1 on a big-endian host, whose floats a little-endian file (parameter files,
 * checkpoints) must swap; 0 elsewhere. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define BL_HOST_BIG_ENDIAN 1
#else
#define BL_HOST_BIG_ENDIAN 0
#endif

/* Writes count floats of `from` to `to` with each one's bytes reversed; `to`
 * may be `from` (in place). */
static inline void bl_swap_floats(const float *from, float *to, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        unsigned char b[sizeof(float)], r[sizeof(float)];
        memcpy(b, &from[i], sizeof b);
        for (size_t k = 0; k < sizeof b; k++) {
            r[k] = b[sizeof b - 1 - k];
        }
        memcpy(&to[i], r, sizeof r);
    }
}

static inline void bl_le_put64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(v >> (8 * i));
    }
}

static inline uint32_t bl_le_get32(const unsigned char *b)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) {
        v = (v << 8) | b[i];
    }
    return v;
}

static inline uint64_t bl_le_get64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | b[i];
    }
    return v;
}

#endif /* BL_INTERNAL_H */
