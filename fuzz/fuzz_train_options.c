/* libFuzzer harness of ballast-train's command line
 * (tools/train_options.c over tools/flags.c).
 *
 * Input layout:
 *   byte 0   bits 0-3: the job's ranks - 1 (1..16) for
 *            train_options_check_ranks; bit 4: a 16-byte error buffer
 *            instead of 512 bytes (messages are cut, never overrun)
 *   the rest the arguments after argv[0], separated by NUL or newline
 *            bytes (empty arguments kept), at most FUZZ_MAX_ARGS of them;
 *            what follows the last separator is the last argument.
 *
 * train_options_parse must return 0 or -1; -1 with a non-empty, terminated
 * message; 0 with options inside the ranges the program relies on. A
 * successful parse without --help is then checked against the rank count,
 * as ballast-train does. The parser allocates nothing, so any leak is a
 * bug. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_options.h"

#define FUZZ_MAX_ARGS  64
#define FUZZ_ERR_LONG  512
#define FUZZ_ERR_SHORT 16

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_train_options: check failed at %s:%d: %s\n", __FILE__, __LINE__, \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* train_options_t is large (per-rank lists): one, reused. */
static train_options_t g_options;

/* A failure's message: not empty, terminated inside the buffer, nothing
 * written past it. */
static void check_message(const char *err, size_t errlen)
{
    FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', errlen) != NULL);
    for (size_t i = errlen; i < FUZZ_ERR_LONG; i++) {
        FUZZ_CHECK(err[i] == 0x7f);
    }
}

/* What a successful parse promises the program. */
static void check_options(const train_options_t *o)
{
    FUZZ_CHECK(o->data_dir != NULL && o->policy != NULL);
    FUZZ_CHECK(o->hidden_count >= 1 && o->hidden_count <= TRAIN_MAX_LAYERS);
    for (int i = 0; i < o->hidden_count; i++) {
        FUZZ_CHECK(o->hidden[i] >= 1);
    }
    FUZZ_CHECK(o->batch >= 1);
    FUZZ_CHECK(o->lr > 0.0f && o->momentum >= 0.0f && o->momentum < 1.0f);
    FUZZ_CHECK(o->steps >= -1 && o->epochs >= 1);
    FUZZ_CHECK(o->pp >= 1 && o->pp <= train_options_layer_count(o));
    FUZZ_CHECK(o->micro_batches >= 1);
    FUZZ_CHECK(o->shard_count >= 0 && o->shard_count <= TRAIN_MAX_RANKS);
    FUZZ_CHECK(o->shard_min_count >= 0 && o->shard_min_count <= TRAIN_MAX_RANKS);
    FUZZ_CHECK(o->shard_max_count >= 0 && o->shard_max_count <= TRAIN_MAX_RANKS);
    FUZZ_CHECK(o->slowdown_count >= 0 && o->slowdown_count <= TRAIN_MAX_SLOWDOWNS);
    FUZZ_CHECK(o->stage_plan_count >= 0 && o->stage_plan_count <= TRAIN_MAX_STAGE_PLAN);
    if (o->stage_count > 0) {
        FUZZ_CHECK(o->stage_count == o->pp && o->stages_end == train_options_layer_count(o));
        FUZZ_CHECK(o->stage_first[0] == 0);
        for (int s = 1; s < o->stage_count; s++) {
            FUZZ_CHECK(o->stage_first[s] > o->stage_first[s - 1]);
        }
    }
    for (int k = 0; k < o->stage_plan_count; k++) {
        const int *first = o->stage_plan_first + (size_t)k * (size_t)o->pp;
        FUZZ_CHECK(first[0] == 0);
        for (int s = 1; s < o->pp; s++) {
            FUZZ_CHECK(first[s] > first[s - 1] && first[s] < train_options_layer_count(o));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    int ranks = 1 + (data[0] & 15);
    size_t errlen = (data[0] & 16) ? FUZZ_ERR_SHORT : FUZZ_ERR_LONG;
    data++;
    size--;

    /* The argument bytes, each separator turned into the terminator. */
    char *text = malloc(size + 1);
    if (text == NULL) {
        return 0;
    }
    char *argv[FUZZ_MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = (char *)"ballast-train";
    if (size > 0) {
        memcpy(text, data, size);
        text[size] = '\0';
        argv[argc++] = text;
        for (size_t i = 0; i < size; i++) {
            if (text[i] == '\0' || text[i] == '\n') {
                text[i] = '\0';
                if (i + 1 == size || argc == FUZZ_MAX_ARGS + 1) {
                    break;
                }
                argv[argc++] = text + i + 1;
            }
        }
    }
    argv[argc] = NULL;

    char err[FUZZ_ERR_LONG];
    memset(err, 0x7f, sizeof err);
    int r = train_options_parse(argc, argv, &g_options, err, errlen);
    if (getenv("BALLAST_FUZZ_VERBOSE") != NULL) {
        fprintf(stderr, "fuzz_train_options: parse %d: %s\n", r, r == 0 ? "ok" : err);
    }
    FUZZ_CHECK(r == 0 || r == -1);
    if (r != 0) {
        check_message(err, errlen);
    } else {
        check_options(&g_options);
        if (!g_options.help) {
            memset(err, 0x7f, sizeof err);
            int c = train_options_check_ranks(&g_options, ranks, err, errlen);
            if (getenv("BALLAST_FUZZ_VERBOSE") != NULL) {
                fprintf(stderr, "fuzz_train_options: %d ranks %d: %s\n", ranks, c,
                        c == 0 ? "ok" : err);
            }
            FUZZ_CHECK(c == 0 || c == -1);
            if (c != 0) {
                check_message(err, errlen);
            }
        }
    }
    free(text);
    return 0;
}
