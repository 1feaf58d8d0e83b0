/* The C side of the PyTorch comparison (torch_gpt2_check.sh): ballast's
 * GPT-2 model (runtime/model/gpt2.h) trained with AdamW on llm.c's files,
 * and the generators of the random model and tokens both sides read.
 *
 *   gpt2_train_ref init MODEL --seed S --maxT N --V N --Vp N --L N --NH N --C N
 *   gpt2_train_ref tokens TOKENS --seed S --count N --V N
 *   gpt2_train_ref train MODEL TOKENS OUT --B N --T N --steps N --lr X
 *       --beta1 X --beta2 X --eps X --wd X --clip X [--device cpu|mirror]
 *
 * init writes GPT-2's initialisation (bl_gpt2_init_params) as an llm.c
 * model file. tokens writes a token stream with structure to learn: each
 * token is (5 · previous + 3) mod V, or a uniform draw one time in four.
 * train runs `steps` steps; step s (from 0) reads window s mod (N / W) of
 * W = B · (T + 1) consecutive tokens, sequence b its tokens b · (T + 1)
 * onward, the inputs the first T and the targets the T after the first.
 * Each step prints "step S loss L norm G" (the mean loss before the update,
 * the gradient's norm before clipping), and OUT gets the final parameters
 * as an llm.c model file. Exit status 0, 1 on a failure, 2 on bad usage. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "gpt2_file.h"
#include "tokens.h"

#define MAX_OPTS 16

typedef struct opts {
    const char *name[MAX_OPTS];
    const char *value[MAX_OPTS];
    int count;
} opts_t;

static int usage(const char *why)
{
    fprintf(stderr, "gpt2_train_ref: %s\n(see the comment at the top of gpt2_train_ref.c)\n", why);
    return 2;
}

/* Collects "--name value" pairs from argv[first..argc). */
static int parse(int argc, char **argv, int first, opts_t *o)
{
    memset(o, 0, sizeof *o);
    for (int i = first; i < argc; i += 2) {
        if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc || o->count == MAX_OPTS) {
            fprintf(stderr, "gpt2_train_ref: '%s' is not a --name value pair\n", argv[i]);
            return -1;
        }
        o->name[o->count] = argv[i] + 2;
        o->value[o->count++] = argv[i + 1];
    }
    return 0;
}

/* The value of --name as a number, or def when absent (def NaN: required;
 * *bad is set when it is missing or not a number). */
static double num(const opts_t *o, const char *name, double def, int *bad)
{
    for (int i = 0; i < o->count; i++) {
        if (strcmp(o->name[i], name) == 0) {
            char *end = NULL;
            const double v = strtod(o->value[i], &end);
            if (end == o->value[i] || *end != '\0') {
                fprintf(stderr, "gpt2_train_ref: --%s: '%s' is not a number\n", name, o->value[i]);
                *bad = 1;
            }
            return v;
        }
    }
    if (isnan(def)) {
        fprintf(stderr, "gpt2_train_ref: --%s is required\n", name);
        *bad = 1;
    }
    return def;
}

static const char *str(const opts_t *o, const char *name, const char *def)
{
    for (int i = 0; i < o->count; i++) {
        if (strcmp(o->name[i], name) == 0) {
            return o->value[i];
        }
    }
    return def;
}

static int failed(const bl_error_t *err)
{
    fprintf(stderr, "gpt2_train_ref: %s\n", err->msg);
    return 1;
}

static int cmd_init(const char *path, const opts_t *o)
{
    int bad = 0;
    const double req = NAN;
    bl_gpt2_config_t cfg = {
        .max_seq_len = (int)num(o, "maxT", req, &bad),
        .vocab_size = (int)num(o, "V", req, &bad),
        .num_layers = (int)num(o, "L", req, &bad),
        .num_heads = (int)num(o, "NH", req, &bad),
        .channels = (int)num(o, "C", req, &bad),
        .padded_vocab_size = (int)num(o, "Vp", req, &bad),
    };
    const uint64_t seed = (uint64_t)num(o, "seed", req, &bad);
    if (bad) {
        return 2;
    }
    bl_error_t err = {0};
    bl_gpt2_t *g = NULL;
    if (bl_gpt2_create(&cfg, &bl_cpu_kernels, NULL, NULL, &err, &g) != BL_OK ||
        bl_gpt2_init_params(g, seed, &err) != BL_OK) {
        bl_gpt2_destroy(g);
        return failed(&err);
    }
    bl_gpt2_file_t file = {.config = cfg, .param_count = g->param_count, .params = g->params};
    const bl_status_t s = bl_gpt2_write(path, &file, &err);
    bl_gpt2_destroy(g);
    return s == BL_OK ? 0 : failed(&err);
}

static int cmd_tokens(const char *path, const opts_t *o)
{
    int bad = 0;
    const uint64_t seed = (uint64_t)num(o, "seed", NAN, &bad);
    const long count = (long)num(o, "count", NAN, &bad);
    const int V = (int)num(o, "V", NAN, &bad);
    if (bad || count <= 0 || V <= 0 || V > 65536) {
        return bad ? 2 : usage("--count and --V must be positive, --V at most 65536");
    }
    uint16_t *tok = malloc((size_t)count * sizeof *tok);
    if (tok == NULL) {
        return usage("out of memory");
    }
    bl_rng_t r;
    bl_rng_init(&r, seed);
    uint64_t prev = bl_rng_below(&r, (uint64_t)V);
    for (long i = 0; i < count; i++) {
        const int noise = bl_rng_below(&r, 4) == 0;
        prev = noise ? bl_rng_below(&r, (uint64_t)V) : (5 * prev + 3) % (uint64_t)V;
        tok[i] = (uint16_t)prev;
    }
    bl_error_t err = {0};
    const bl_status_t s = bl_tokens_write(path, tok, count, &err);
    free(tok);
    return s == BL_OK ? 0 : failed(&err);
}

static int cmd_train(const char *model_path, const char *tokens_path, const char *out_path,
                     const opts_t *o)
{
    int bad = 0;
    const int B = (int)num(o, "B", NAN, &bad), T = (int)num(o, "T", NAN, &bad);
    const long steps = (long)num(o, "steps", NAN, &bad);
    bl_gpt2_adamw_t opt = BL_GPT2_ADAMW_INIT;
    opt.lr = (float)num(o, "lr", NAN, &bad);
    opt.beta1 = (float)num(o, "beta1", NAN, &bad);
    opt.beta2 = (float)num(o, "beta2", NAN, &bad);
    opt.eps = (float)num(o, "eps", NAN, &bad);
    opt.weight_decay = (float)num(o, "wd", NAN, &bad);
    opt.max_grad_norm = (float)num(o, "clip", 0.0, &bad);
    const char *device = str(o, "device", "cpu");
    if (bad) {
        return 2;
    }
    if (strcmp(device, "cpu") != 0 && strcmp(device, "mirror") != 0) {
        return usage("--device must be cpu or mirror");
    }
    bl_error_t err = {0};
    bl_gpt2_file_t file = {0};
    bl_tokens_t toks = {0};
    bl_gpt2_t *g = NULL;
    bl_gpt2_acts_t acts = {0};
    int32_t *ids = NULL;
    int rc = 1;
    if (bl_gpt2_load(model_path, NULL, &err, &file) != BL_OK ||
        bl_tokens_load(tokens_path, file.config.vocab_size, NULL, &err, &toks) != BL_OK ||
        bl_gpt2_create(&file.config, &bl_cpu_kernels,
                       strcmp(device, "mirror") == 0 ? &bl_mirror_memory : NULL, NULL, &err,
                       &g) != BL_OK ||
        bl_gpt2_upload(g, file.params, &err) != BL_OK ||
        bl_gpt2_acts_init(g, B, T, &acts, &err) != BL_OK) {
        rc = failed(&err);
        goto done;
    }
    const long W = (long)B * (T + 1), windows = toks.count / W, n = (long)B * T;
    ids = malloc(2 * (size_t)n * sizeof *ids);
    if (windows < 1 || steps < 0 || ids == NULL) {
        fprintf(stderr, "gpt2_train_ref: %s\n",
                ids == NULL ? "out of memory" : "too few tokens for one batch, or steps < 0");
        goto done;
    }
    for (long s = 0; s < steps; s++) {
        const uint16_t *win = toks.tokens + (s % windows) * W;
        for (long b = 0; b < B; b++) {
            for (long t = 0; t < T; t++) {
                ids[b * T + t] = win[b * (T + 1) + t];
                ids[n + b * T + t] = win[b * (T + 1) + t + 1];
            }
        }
        double loss = 0.0, norm = 0.0;
        if (bl_gpt2_zero_grads(g, &err) != BL_OK ||
            bl_gpt2_forward(g, &acts, ids, ids + n, &loss, &err) != BL_OK ||
            bl_gpt2_backward(g, &acts, &err) != BL_OK ||
            bl_gpt2_adamw_step(g, &opt, n, &norm, &err) != BL_OK) {
            rc = failed(&err);
            goto done;
        }
        printf("step %ld loss %.9g norm %.9g\n", s + 1, loss / (double)n, norm);
    }
    if (bl_gpt2_download(g, g->params, file.params, &err) != BL_OK ||
        bl_gpt2_write(out_path, &file, &err) != BL_OK) {
        rc = failed(&err);
        goto done;
    }
    rc = 0;
done:
    free(ids);
    bl_gpt2_acts_free(g, &acts);
    bl_gpt2_destroy(g);
    bl_tokens_free(&toks, NULL);
    bl_gpt2_free(&file, NULL);
    return rc;
}

int main(int argc, char **argv)
{
    opts_t o;
    const char *cmd = argc > 1 ? argv[1] : "";
    const int positional = strcmp(cmd, "train") == 0 ? 3 : 1;
    if ((strcmp(cmd, "init") != 0 && strcmp(cmd, "tokens") != 0 && strcmp(cmd, "train") != 0) ||
        argc < 2 + positional) {
        return usage("usage: gpt2_train_ref init|tokens|train FILE... --name value...");
    }
    if (parse(argc, argv, 2 + positional, &o) != 0) {
        return 2;
    }
    if (strcmp(cmd, "init") == 0) {
        return cmd_init(argv[2], &o);
    }
    if (strcmp(cmd, "tokens") == 0) {
        return cmd_tokens(argv[2], &o);
    }
    return cmd_train(argv[2], argv[3], argv[4], &o);
}
