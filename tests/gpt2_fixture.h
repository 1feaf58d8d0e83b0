/* The GPT-2 model tests' shared fixture (test_gpt2_model.c,
 * test_gpt2_users.c): a tiny config and batch, and the models, activations
 * and host buffers a test makes, all freed by gpt2_release_held when the
 * test ends (its teardown), pass or fail. Header-only (static functions);
 * include cmocka.h first. */
#ifndef BL_GPT2_FIXTURE_H
#define BL_GPT2_FIXTURE_H

#include <stdint.h>
#include <stdlib.h>

#include "gpt2.h"

#define B     2
#define T     5
#define NROWS (B * T)

/* maxT 8, V 11, L 2, NH 2, C 8, Vp 16. */
static const bl_gpt2_config_t CFG = {8, 11, 2, 2, 8, 16};

/* Tokens and targets (B, T); token 3 repeats, and 10 (= V − 1) occurs. */
static const int32_t TOKENS[NROWS] = {3, 1, 4, 3, 5, 9, 2, 6, 10, 3};
static const int32_t TARGETS[NROWS] = {1, 4, 3, 5, 9, 2, 6, 10, 3, 7};

static struct {
    bl_gpt2_t *model[4];
    bl_gpt2_acts_t acts[4];
    const bl_gpt2_t *acts_of[4];
    void *buf[8];
    int models, acts_count, bufs;
} held;

/* Holds g, to be destroyed by gpt2_release_held. */
static bl_gpt2_t *gpt2_hold(bl_gpt2_t *g)
{
    assert_true(held.models < 4);
    held.model[held.models++] = g;
    return g;
}

/* Activations of g for `batch` sequences of T tokens, held. */
static bl_gpt2_acts_t *gpt2_make_acts(const bl_gpt2_t *g, int batch)
{
    bl_error_t err = {0};
    assert_true(held.acts_count < 4);
    bl_gpt2_acts_t *acts = &held.acts[held.acts_count];
    if (bl_gpt2_acts_init(g, batch, T, acts, &err) != BL_OK) {
        fail_msg("bl_gpt2_acts_init: %s", err.msg);
    }
    held.acts_of[held.acts_count++] = g;
    return acts;
}

/* count floats of host memory, held. */
static float *fbuf(size_t count)
{
    assert_true(held.bufs < 8);
    float *p = malloc(count * sizeof(float));
    assert_non_null(p);
    held.buf[held.bufs++] = p;
    return p;
}

/* Frees everything held, activations before their models. */
static void gpt2_release_held(void)
{
    while (held.acts_count > 0) {
        held.acts_count--;
        bl_gpt2_acts_free(held.acts_of[held.acts_count], &held.acts[held.acts_count]);
    }
    while (held.models > 0) {
        bl_gpt2_destroy(held.model[--held.models]);
    }
    while (held.bufs > 0) {
        free(held.buf[--held.bufs]);
    }
}

#endif /* BL_GPT2_FIXTURE_H */
