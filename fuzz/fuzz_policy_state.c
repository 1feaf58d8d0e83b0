/* libFuzzer harness for the policies' learned state as a checkpoint loads
 * it (partition/state.c and the walks in policy.c, restage.c,
 * estimator.c). The first input byte picks the object: a shard policy of
 * kind byte % 4 over 4 ranks (byte < 128) or a stage policy of kind
 * byte % 4 over 6 layers and 2 stages; the rest is the state. A load must
 * either refuse with a message, leaving the object as it was, or accept
 * state that the next decisions can use: after an accepted load, 4
 * decisions run on fixed observations, under AddressSanitizer and
 * UndefinedBehaviorSanitizer. Seeds (corpus/fuzz_policy_state): every
 * object's state after a few decisions, written by this harness with
 * BALLAST_FUZZ_WRITE_SEEDS=DIR (fuzz/README.md). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "restage.h"

enum { P = 4, L = 6, S = 2, WINDOWS = 4 };

static const double anchor[L] = {3.0, 0.1, 2.0, 0.1, 1.0, 0.1};
static const double layer_bytes[L] = {3e5, 0, 2e5, 0, 1e5, 0};

static bl_policy_t *shard_policy(int kind)
{
    bl_policy_config_t c = {.kind = (bl_policy_kind_t)kind,
                            .ranks = P,
                            .batch = 64,
                            .deadband = 0.02,
                            .seed = 9,
                            .estimator = BL_ESTIMATOR_PARAMS_DEFAULT};
    bl_policy_t *p = NULL;
    char err[256];
    if (bl_policy_create(&c, NULL, &p, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_policy_state: %s\n", err);
        abort();
    }
    return p;
}

static bl_restage_t *stage_policy(int kind)
{
    bl_restage_config_t c = {.kind = (bl_policy_kind_t)kind,
                             .layers = L,
                             .stages = S,
                             .anchor = anchor,
                             .layer_bytes = layer_bytes,
                             .bandwidth = 1e9,
                             .latency_s = 1e-3,
                             .horizon_steps = 100.0,
                             .threshold = 0.02,
                             .seed = 9,
                             .estimator = BL_ESTIMATOR_PARAMS_DEFAULT};
    bl_restage_t *r = NULL;
    char err[256];
    if (bl_restage_create(&c, NULL, &r, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_policy_state: %s\n", err);
        abort();
    }
    return r;
}

/* Fixed windows: rank (stage) 0 half as fast as the others. */
static void shard_windows(bl_policy_t *p)
{
    long plan[P] = {16, 16, 16, 16};
    for (int w = 0; w < WINDOWS; w++) {
        bl_rank_obs_t obs[P];
        double slowest = 0.0;
        for (int r = 0; r < P; r++) {
            obs[r] = (bl_rank_obs_t){.samples = (double)plan[r],
                                     .compute_s = (double)plan[r] / (r == 0 ? 500.0 : 1000.0),
                                     .comm_s = 0.001,
                                     .wait_s = 0.0};
            slowest = obs[r].compute_s > slowest ? obs[r].compute_s : slowest;
        }
        bl_decision_t d;
        if (bl_policy_decide(p, obs, slowest, plan, plan, &d) != 0) {
            abort(); /* valid observations are never refused */
        }
    }
}

static void stage_windows(bl_restage_t *r)
{
    int first[S + 1] = {0, 3, L};
    for (int w = 0; w < WINDOWS; w++) {
        double layer_s[L], stage[S] = {0.0, 0.0};
        for (int s = 0; s < S; s++) {
            for (int i = first[s]; i < first[s + 1]; i++) {
                layer_s[i] = anchor[i] * 1e-3 / (s == 0 ? 0.5 : 1.0);
                stage[s] += layer_s[i];
            }
        }
        bl_restage_obs_t obs = {.first = first,
                                .layer_s = layer_s,
                                .step_s = stage[0] > stage[1] ? stage[0] : stage[1]};
        int next[S + 1];
        bl_restage_decision_t d;
        if (bl_restage_decide(r, &obs, next, &d) != 0) {
            abort();
        }
        if (d.changed) {
            bl_restage_migrated(r, bl_restage_move_bytes(r, first, next), d.move_s);
            memcpy(first, next, sizeof next);
        }
    }
}

static void write_seeds(const char *dir)
{
    for (int k = 0; k < 8; k++) {
        unsigned char *bytes = NULL;
        size_t n = 0;
        if (k < 4) {
            bl_policy_t *p = shard_policy(k);
            shard_windows(p);
            n = bl_policy_state_bytes(p);
            bytes = malloc(n + 1);
            bl_policy_state_save(p, bytes + 1);
            bl_policy_destroy(p);
        } else {
            bl_restage_t *r = stage_policy(k - 4);
            stage_windows(r);
            n = bl_restage_state_bytes(r);
            bytes = malloc(n + 1);
            bl_restage_state_save(r, bytes + 1);
            bl_restage_destroy(r);
        }
        bytes[0] = (unsigned char)(k < 4 ? k : 128 + k - 4);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s-%s", dir, k < 4 ? "shard" : "stage",
                 bl_policy_name((bl_policy_kind_t)(k % 4)));
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(bytes, 1, n + 1, f) != n + 1 || fclose(f) != 0) {
            fprintf(stderr, "fuzz_policy_state: cannot write %s\n", path);
            exit(1);
        }
        free(bytes);
    }
    exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("BALLAST_FUZZ_WRITE_SEEDS");
    if (dir != NULL) {
        write_seeds(dir);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    /* A copy of exactly the state's bytes, so ASan sees any read past it. */
    size_t n = size - 1;
    unsigned char *state = malloc(n > 0 ? n : 1);
    if (state == NULL) {
        return 0;
    }
    memcpy(state, data + 1, n);
    char err[256] = "";
    int kind = data[0] % 4;
    if (data[0] < 128) {
        bl_policy_t *p = shard_policy(kind);
        if (bl_policy_state_load(p, state, n, err, sizeof err) == 0) {
            shard_windows(p);
        } else if (err[0] == '\0') {
            abort(); /* a refusal always says why */
        }
        bl_policy_destroy(p);
    } else {
        bl_restage_t *r = stage_policy(kind);
        if (bl_restage_state_load(r, state, n, err, sizeof err) == 0) {
            stage_windows(r);
        } else if (err[0] == '\0') {
            abort();
        }
        bl_restage_destroy(r);
    }
    free(state);
    return 0;
}
