/* ballast-train's flags, parsed with getopt_long and validated strictly:
 * every value must parse whole and lie in range, or the flag is named in a
 * one-line error. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "lm_options.h"
#include "train_options.h"

/* "on" or "off" into *out (1 or 0). */
static int on_off(const char *flag, const char *arg, int *out, char *err, size_t errlen)
{
    if (strcmp(arg, "on") == 0 || strcmp(arg, "off") == 0) {
        *out = strcmp(arg, "on") == 0;
        return 0;
    }
    return flags_fail(err, errlen, "%s: '%s' is neither on nor off", flag, arg);
}

/* A list of integers in [lo, hi] separated by single commas, such as
 * "256,128", into out (at most max_count). noun names one value in
 * messages ("width"); plural the list ("hidden layers"). */
static int parse_int_list(const char *flag, const char *text, long lo, long hi, int max_count,
                          const char *noun, const char *plural, int *out, int *count, char *err,
                          size_t errlen)
{
    int n = 0;
    const char *p = text;
    if (*p == '\0') {
        return flags_fail(err, errlen, "%s: empty; give %s such as 256,128", flag, plural);
    }
    while (*p != '\0') {
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0') || errno == ERANGE || *p == ' ' ||
            *p == '+') {
            return flags_fail(err, errlen, "%s: '%s' is not a comma-separated list of %s", flag,
                              text, plural);
        }
        if (v < lo || v > hi) {
            return flags_fail(err, errlen, "%s: %s %ld is outside [%ld, %ld]", flag, noun, v, lo,
                              hi);
        }
        if (n == max_count) {
            return flags_fail(err, errlen, "%s: more than %d %s", flag, max_count, plural);
        }
        out[n++] = (int)v;
        p = end;
        if (*p == ',') {
            p++;
            if (*p == '\0') {
                return flags_fail(err, errlen, "%s: '%s' ends with a comma", flag, text);
            }
        }
    }
    *count = n;
    return 0;
}

/* cpu, cuda, auto or mirror, comma-separated: one for all ranks or one
 * per rank. */
static int parse_devices(const char *flag, const char *arg, train_options_t *o, char *err,
                         size_t errlen)
{
    static const char *const names[] = {"cpu", "cuda", "auto", "mirror"};
    static const int kinds[] = {BL_DEVICE_CPU, BL_DEVICE_CUDA, BL_DEVICE_AUTO, BL_DEVICE_MIRROR};
    int n = 0;
    for (const char *p = arg;; n++) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int k = 0; k < 4; k++) {
            if (strlen(names[k]) == len && strncmp(p, names[k], len) == 0) {
                found = k;
            }
        }
        if (found < 0) {
            return flags_fail(err, errlen, "%s: '%.*s' is not cpu, cuda, auto or mirror (in '%s')",
                              flag, (int)len, p, arg);
        }
        if (n == TRAIN_MAX_RANKS) {
            return flags_fail(err, errlen, "%s: more than %d devices", flag, TRAIN_MAX_RANKS);
        }
        o->devices[n] = kinds[found];
        if (p[len] == '\0') {
            break;
        }
        p += len + 1;
    }
    o->device_count = n + 1;
    return 0;
}

int train_options_device(const train_options_t *o, int rank)
{
    return o->device_count == 1 ? o->devices[0] : o->devices[rank];
}

/* RANK:FACTOR[@FROM[-TO]], e.g. 1:2, 1:2@100, 1:2@100-200. */
static int parse_slowdown(const char *flag, const char *arg, train_options_t *o, char *err,
                          size_t errlen)
{
    if (o->slowdown_count == TRAIN_MAX_SLOWDOWNS) {
        return flags_fail(err, errlen, "%s: more than %d given", flag, TRAIN_MAX_SLOWDOWNS);
    }
    bl_slowdown_t s = {.from_step = 0, .to_step = -1};
    char *end = NULL;
    errno = 0;
    long rank = strtol(arg, &end, 10);
    if (end == arg || *end != ':' || errno == ERANGE || rank < 0 || rank > INT_MAX ||
        arg[0] == '+' || arg[0] == ' ') {
        return flags_fail(err, errlen, "%s: '%s' is not RANK:FACTOR[@FROM[-TO]]", flag, arg);
    }
    const char *p = end + 1;
    s.rank = (int)rank;
    s.factor = strtod(p, &end);
    if (end == p || (*end != '\0' && *end != '@') || !isfinite(s.factor) || s.factor < 1.0) {
        return flags_fail(err, errlen, "%s: '%s': the factor must be a number >= 1", flag, arg);
    }
    if (*end == '@') {
        p = end + 1;
        s.from_step = strtol(p, &end, 10);
        if (end == p || s.from_step < 0 || (*end != '\0' && *end != '-')) {
            return flags_fail(err, errlen, "%s: '%s': FROM must be a step >= 0", flag, arg);
        }
        if (*end == '-') {
            p = end + 1;
            s.to_step = strtol(p, &end, 10);
            if (end == p || *end != '\0' || s.to_step < s.from_step) {
                return flags_fail(err, errlen, "%s: '%s': TO must be a step >= FROM", flag, arg);
            }
        }
    }
    o->slowdowns[o->slowdown_count++] = s;
    return 0;
}

/* Stage layer ranges "A-B,C-D,...": inclusive, each starting right after
 * the previous one ends, the first at layer 0, into first[] (*count
 * stages; *end one past the last layer). (That the last ends at the
 * model's last layer is checked with the model's size.) */
static int parse_map(const char *flag, const char *text, int *first, int *count, int *end_layer,
                     char *err, size_t errlen)
{
    const char *p = text;
    int n = 0, next = 0;
    while (*p != '\0') {
        char *end = NULL;
        long lo = -1, hi = -1;
        if (*p >= '0' && *p <= '9') {
            lo = strtol(p, &end, 10);
        }
        if (end != NULL && *end == '-' && end[1] >= '0' && end[1] <= '9') {
            hi = strtol(end + 1, &end, 10);
        }
        /* below INT_MAX: the next stage's first layer, hi + 1, is an int */
        if (lo < 0 || hi < 0 || (*end != ',' && *end != '\0') || lo >= INT_MAX || hi >= INT_MAX) {
            return flags_fail(err, errlen, "%s: '%s' is not a list of layer ranges such as 0-2,3-4",
                              flag, text);
        }
        if (n == TRAIN_MAX_LAYERS) {
            return flags_fail(err, errlen, "%s: more than %d stages", flag, TRAIN_MAX_LAYERS);
        }
        if (lo != next || hi < lo) {
            return flags_fail(err, errlen,
                              "%s: stage %d is layers %ld-%ld; it must start at layer %d (stages "
                              "are contiguous from layer 0) and end at or after it",
                              flag, n, lo, hi, next);
        }
        first[n++] = (int)lo;
        next = (int)hi + 1;
        p = *end == ',' ? end + 1 : end;
        if (*end == ',' && *p == '\0') {
            return flags_fail(err, errlen, "%s: '%s' ends with a comma", flag, text);
        }
    }
    if (n == 0) {
        return flags_fail(err, errlen, "%s: empty; give layer ranges such as 0-2,3-4", flag);
    }
    *count = n;
    *end_layer = next;
    return 0;
}

/* "STEP:A-B,C-D,...": after step STEP the stages own these layers. */
static int parse_stages_at(const char *flag, const char *text, train_options_t *o, char *err,
                           size_t errlen)
{
    int k = o->stage_plan_count;
    if (k == TRAIN_MAX_STAGE_PLAN) {
        return flags_fail(err, errlen, "%s: more than %d maps", flag, TRAIN_MAX_STAGE_PLAN);
    }
    char *end = NULL;
    long step = *text >= '0' && *text <= '9' ? strtol(text, &end, 10) : -1;
    if (step < 0 || end == NULL || *end != ':') {
        return flags_fail(err, errlen, "%s: '%s' is not STEP:MAP such as 20:0-2,3-4", flag, text);
    }
    if (k > 0 && step <= o->stage_plan_steps[k - 1]) {
        return flags_fail(err, errlen,
                          "%s: step %ld comes after step %ld: give the maps in step "
                          "order",
                          flag, step, o->stage_plan_steps[k - 1]);
    }
    if (parse_map(flag, end + 1, o->stage_plan_first + (size_t)k * TRAIN_MAX_LAYERS,
                  &o->stage_plan_stages[k], &o->stage_plan_end[k], err, errlen) != 0) {
        return -1;
    }
    o->stage_plan_steps[k] = step;
    o->stage_plan_count++;
    return 0;
}

enum {
    OPT_DATA = 256,
    OPT_LAYERS,
    OPT_BATCH,
    OPT_LR,
    OPT_MOMENTUM,
    OPT_WEIGHT_DECAY,
    OPT_EPOCHS,
    OPT_STEPS,
    OPT_SEED,
    OPT_SHUFFLE,
    OPT_THREADS,
    OPT_INIT_PARAMS,
    OPT_SAVE_PARAMS,
    OPT_PROGRESS,
    OPT_EVAL_EVERY,
    OPT_CLASSES,
    OPT_SHARDS,
    OPT_CHECKPOINT_DIR,
    OPT_CHECKPOINT_EVERY,
    OPT_KEEP,
    OPT_RESUME,
    OPT_TIMEOUT,
    OPT_MEM_LIMIT,
    OPT_NODE_REDUCE,
    OPT_DEVICE,
    OPT_NCCL,
    OPT_DATA_ON_DEVICE,
    OPT_SHARD_MIN,
    OPT_SHARD_MAX,
    OPT_DP,
    OPT_PP,
    OPT_MICRO_BATCHES,
    OPT_SCHEDULE,
    OPT_STAGE_MEMORY,
    OPT_STAGES,
    OPT_STAGES_AT,
    OPT_REPARTITION_HORIZON,
    OPT_REPARTITION_THRESHOLD,
    OPT_BUCKET_MB,
    OPT_POLICY,
    OPT_REBALANCE_EVERY,
    OPT_POLICY_FILE,
    OPT_SLOWDOWN,
    OPT_TELEMETRY,
    OPT_TRACE,
    OPT_QUIET,
    OPT_HELP,
    OPT_LM_FIRST, /* lm_flag_names[i] is OPT_LM_FIRST + i */
    OPT_COUNT = OPT_LM_FIRST + LM_FLAG_COUNT,
};

static const struct option long_options[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"layers", required_argument, NULL, OPT_LAYERS},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"lr", required_argument, NULL, OPT_LR},
    {"momentum", required_argument, NULL, OPT_MOMENTUM},
    {"weight-decay", required_argument, NULL, OPT_WEIGHT_DECAY},
    {"epochs", required_argument, NULL, OPT_EPOCHS},
    {"steps", required_argument, NULL, OPT_STEPS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"shuffle", required_argument, NULL, OPT_SHUFFLE},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"init-params", required_argument, NULL, OPT_INIT_PARAMS},
    {"save-params", required_argument, NULL, OPT_SAVE_PARAMS},
    {"progress", required_argument, NULL, OPT_PROGRESS},
    {"eval-every", required_argument, NULL, OPT_EVAL_EVERY},
    {"classes", required_argument, NULL, OPT_CLASSES},
    {"shards", required_argument, NULL, OPT_SHARDS},
    {"checkpoint-dir", required_argument, NULL, OPT_CHECKPOINT_DIR},
    {"checkpoint-every", required_argument, NULL, OPT_CHECKPOINT_EVERY},
    {"keep", required_argument, NULL, OPT_KEEP},
    {"resume", no_argument, NULL, OPT_RESUME},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"mem-limit", required_argument, NULL, OPT_MEM_LIMIT},
    {"node-reduce", required_argument, NULL, OPT_NODE_REDUCE},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"nccl", required_argument, NULL, OPT_NCCL},
    {"data-on-device", required_argument, NULL, OPT_DATA_ON_DEVICE},
    {"shard-min", required_argument, NULL, OPT_SHARD_MIN},
    {"shard-max", required_argument, NULL, OPT_SHARD_MAX},
    {"dp", required_argument, NULL, OPT_DP},
    {"pp", required_argument, NULL, OPT_PP},
    {"micro-batches", required_argument, NULL, OPT_MICRO_BATCHES},
    {"schedule", required_argument, NULL, OPT_SCHEDULE},
    {"stage-memory", required_argument, NULL, OPT_STAGE_MEMORY},
    {"stages", required_argument, NULL, OPT_STAGES},
    {"stages-at", required_argument, NULL, OPT_STAGES_AT},
    {"repartition-horizon", required_argument, NULL, OPT_REPARTITION_HORIZON},
    {"repartition-threshold", required_argument, NULL, OPT_REPARTITION_THRESHOLD},
    {"bucket-mb", required_argument, NULL, OPT_BUCKET_MB},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"rebalance-every", required_argument, NULL, OPT_REBALANCE_EVERY},
    {"policy-file", required_argument, NULL, OPT_POLICY_FILE},
    {"emulate-slowdown", required_argument, NULL, OPT_SLOWDOWN},
    {"telemetry", required_argument, NULL, OPT_TELEMETRY},
    {"trace", required_argument, NULL, OPT_TRACE},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"help", no_argument, NULL, OPT_HELP},
    /* lm_options.c's flags, in lm_flag_names' order */
    {"model", required_argument, NULL, OPT_LM_FIRST + 0},
    {"n-layer", required_argument, NULL, OPT_LM_FIRST + 1},
    {"n-head", required_argument, NULL, OPT_LM_FIRST + 2},
    {"n-embd", required_argument, NULL, OPT_LM_FIRST + 3},
    {"seq-len", required_argument, NULL, OPT_LM_FIRST + 4},
    {"vocab", required_argument, NULL, OPT_LM_FIRST + 5},
    {"max-seq-len", required_argument, NULL, OPT_LM_FIRST + 6},
    {"init-from", required_argument, NULL, OPT_LM_FIRST + 7},
    {"text", required_argument, NULL, OPT_LM_FIRST + 8},
    {"tokens", required_argument, NULL, OPT_LM_FIRST + 9},
    {"val-tokens", required_argument, NULL, OPT_LM_FIRST + 10},
    {"val-fraction", required_argument, NULL, OPT_LM_FIRST + 11},
    {"val-sequences", required_argument, NULL, OPT_LM_FIRST + 12},
    {"val-every", required_argument, NULL, OPT_LM_FIRST + 13},
    {"save-model", required_argument, NULL, OPT_LM_FIRST + 14},
    {"beta1", required_argument, NULL, OPT_LM_FIRST + 15},
    {"beta2", required_argument, NULL, OPT_LM_FIRST + 16},
    {"eps", required_argument, NULL, OPT_LM_FIRST + 17},
    {"clip-grad-norm", required_argument, NULL, OPT_LM_FIRST + 18},
    {"lr-schedule", required_argument, NULL, OPT_LM_FIRST + 19},
    {"warmup", required_argument, NULL, OPT_LM_FIRST + 20},
    {"lr-min", required_argument, NULL, OPT_LM_FIRST + 21},
    {"optimizer", required_argument, NULL, OPT_LM_FIRST + LM_FLAG_OPTIMIZER},
    {"adapter", required_argument, NULL, OPT_LM_FIRST + 23},
    {"token-shift", required_argument, NULL, OPT_LM_FIRST + 24},
    {"adapter-inside", required_argument, NULL, OPT_LM_FIRST + 25},
    {"precision", required_argument, NULL, OPT_LM_FIRST + 26},
    {"zero", required_argument, NULL, OPT_LM_FIRST + 27},
    {NULL, 0, NULL, 0},
};

static void set_defaults(train_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->data_dir = "/usr/share/datasets/fashion-mnist";
    o->hidden[0] = 256;
    o->hidden[1] = 128;
    o->hidden_count = 2;
    o->batch = 128;
    o->lr = 0.05f;
    o->momentum = 0.9f;
    o->weight_decay = 0.0f;
    o->epochs = 1;
    o->steps = -1;
    o->seed = 1;
    o->shuffle = 1;
    o->progress_seconds = 5.0;
    o->bucket_mb = 4.0;
    o->node_reduce = 1;
    o->devices[0] = BL_DEVICE_CPU;
    o->device_count = 1;
    o->nccl = 1;
    o->data_on_device = 1;
    o->policy = "none";
    o->rebalance_every = 10;
    o->pp = 1;
    o->micro_batches = 1;
    o->schedule = BL_SCHEDULE_1F1B;
    o->stage_local = 1;
    o->repartition_horizon = 200.0;
    o->keep = 3;
    o->repartition_threshold = 0.02;
    lm_options_defaults(&o->lm);
}

/* Applies one flag's value; 0 or -1 with err set. */
static int apply(int opt, const char *flag, const char *arg, train_options_t *o, int *seen_epochs,
                 char *err, size_t errlen)
{
    double real = 0.0;
    long integer = 0;
    switch (opt) {
    case OPT_DATA:
        o->data_dir = arg;
        return 0;
    case OPT_LAYERS:
        return parse_int_list(flag, arg, 1, 1000000, TRAIN_MAX_LAYERS, "width", "hidden layers",
                              o->hidden, &o->hidden_count, err, errlen);
    case OPT_SHARDS:
        return parse_int_list(flag, arg, 0, 1 << 24, TRAIN_MAX_RANKS, "shard size", "shard sizes",
                              o->shards, &o->shard_count, err, errlen);
    case OPT_CHECKPOINT_DIR:
        o->checkpoint_dir = arg;
        return 0;
    case OPT_CHECKPOINT_EVERY:
        return flags_long(flag, arg, 0, 1000000000L, &o->checkpoint_every, err, errlen);
    case OPT_KEEP:
        return flags_int(flag, arg, 0, 1000000, &o->keep, err, errlen);
    case OPT_RESUME:
        o->resume = 1;
        return 0;
    case OPT_TIMEOUT:
        return flags_double(flag, arg, 0.0, 1e9, 0, &o->timeout_s, err, errlen);
    case OPT_MEM_LIMIT:
        return flags_bytes(flag, arg, &o->mem_limit_bytes, err, errlen);
    case OPT_SHARD_MIN:
        return parse_int_list(flag, arg, 0, 1 << 24, TRAIN_MAX_RANKS, "shard cap", "shard caps",
                              o->shard_min, &o->shard_min_count, err, errlen);
    case OPT_SHARD_MAX:
        return parse_int_list(flag, arg, 0, 1 << 24, TRAIN_MAX_RANKS, "shard cap", "shard caps",
                              o->shard_max, &o->shard_max_count, err, errlen);
    case OPT_DP:
        return flags_int(flag, arg, 1, TRAIN_MAX_RANKS, &o->dp, err, errlen);
    case OPT_PP:
        return flags_int(flag, arg, 1, TRAIN_MAX_LAYERS * 2 + 1, &o->pp, err, errlen);
    case OPT_MICRO_BATCHES:
        return flags_int(flag, arg, 1, 32767, &o->micro_batches, err, errlen);
    case OPT_SCHEDULE:
        if (strcmp(arg, "gpipe") == 0 || strcmp(arg, "1f1b") == 0) {
            o->schedule = strcmp(arg, "gpipe") == 0 ? BL_SCHEDULE_GPIPE : BL_SCHEDULE_1F1B;
            return 0;
        }
        return flags_fail(err, errlen, "%s: '%s' is neither gpipe nor 1f1b", flag, arg);
    case OPT_STAGE_MEMORY:
        if (strcmp(arg, "local") == 0 || strcmp(arg, "whole") == 0) {
            o->stage_local = strcmp(arg, "local") == 0;
            return 0;
        }
        return flags_fail(err, errlen, "%s: '%s' is neither local nor whole", flag, arg);
    case OPT_STAGES:
        return parse_map(flag, arg, o->stage_first, &o->stage_count, &o->stages_end, err, errlen);
    case OPT_STAGES_AT:
        return parse_stages_at(flag, arg, o, err, errlen);
    case OPT_REPARTITION_HORIZON:
        return flags_double(flag, arg, 1.0, 1e12, 0, &o->repartition_horizon, err, errlen);
    case OPT_REPARTITION_THRESHOLD:
        return flags_double(flag, arg, 0.0, 0.999, 0, &o->repartition_threshold, err, errlen);
    case OPT_BUCKET_MB:
        return flags_double(flag, arg, 1e-6, 4096.0, 0, &o->bucket_mb, err, errlen);
    case OPT_BATCH:
        return flags_int(flag, arg, 1, 1 << 24, &o->batch, err, errlen);
    case OPT_LR:
        if (flags_double(flag, arg, 0.0, 1e6, 0, &real, err, errlen) != 0) {
            return -1;
        }
        if ((float)real == 0.0f) {
            return flags_fail(err, errlen, "%s: the learning rate must be positive (as a float32)",
                              flag);
        }
        o->lr = (float)real;
        return 0;
    case OPT_MOMENTUM:
        if (flags_double(flag, arg, 0.0, 1.0, 1, &real, err, errlen) != 0) {
            return -1;
        }
        if ((float)real >= 1.0f) {
            return flags_fail(err, errlen, "%s: %s rounds to 1 in float32; it must be below 1",
                              flag, arg);
        }
        o->momentum = (float)real;
        return 0;
    case OPT_WEIGHT_DECAY:
        if (flags_double(flag, arg, 0.0, 1.0, 0, &real, err, errlen) != 0) {
            return -1;
        }
        o->weight_decay = (float)real;
        return 0;
    case OPT_EPOCHS:
        *seen_epochs = 1;
        return flags_long(flag, arg, 1, 1000000, &o->epochs, err, errlen);
    case OPT_STEPS:
        return flags_long(flag, arg, 0, LONG_MAX / 2, &o->steps, err, errlen);
    case OPT_SEED:
        if (flags_long(flag, arg, 0, LONG_MAX, &integer, err, errlen) != 0) {
            return -1;
        }
        o->seed = (uint64_t)integer;
        return 0;
    case OPT_SHUFFLE:
        return on_off(flag, arg, &o->shuffle, err, errlen);
    case OPT_NODE_REDUCE:
        return on_off(flag, arg, &o->node_reduce, err, errlen);
    case OPT_NCCL:
        return on_off(flag, arg, &o->nccl, err, errlen);
    case OPT_DATA_ON_DEVICE:
        return on_off(flag, arg, &o->data_on_device, err, errlen);
    case OPT_DEVICE:
        return parse_devices(flag, arg, o, err, errlen);
    case OPT_THREADS:
        return flags_int(flag, arg, 1, 1024, &o->threads, err, errlen);
    case OPT_INIT_PARAMS:
        o->init_params = arg;
        return 0;
    case OPT_SAVE_PARAMS:
        o->save_params = arg;
        return 0;
    case OPT_PROGRESS:
        return flags_double(flag, arg, 0.0, 1e6, 0, &o->progress_seconds, err, errlen);
    case OPT_EVAL_EVERY:
        return flags_long(flag, arg, 0, 1000000, &o->eval_every, err, errlen);
    case OPT_CLASSES:
        return flags_int(flag, arg, 1, 256, &o->classes, err, errlen);
    case OPT_POLICY: {
        static const char *const names[] = {"none", "static", "proportional", "bandit", "rl"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            if (strcmp(arg, names[i]) == 0) {
                o->policy = names[i];
                return 0;
            }
        }
        return flags_fail(err, errlen,
                          "%s: '%s' is not one of none, static, proportional, bandit, rl", flag,
                          arg);
    }
    case OPT_REBALANCE_EVERY:
        return flags_int(flag, arg, 1, 1000000, &o->rebalance_every, err, errlen);
    case OPT_POLICY_FILE:
        o->policy_file = arg;
        return 0;
    case OPT_SLOWDOWN:
        return parse_slowdown(flag, arg, o, err, errlen);
    case OPT_TELEMETRY:
        o->telemetry_path = arg;
        return 0;
    case OPT_TRACE:
        o->trace_path = arg;
        return 0;
    case OPT_QUIET:
        o->quiet = 1;
        return 0;
    case OPT_HELP:
        o->help = 1;
        return 0;
    default:
        if (opt >= OPT_LM_FIRST && opt < OPT_COUNT) {
            return lm_options_apply(opt - OPT_LM_FIRST, flag, arg, &o->lm, err, errlen);
        }
        return flags_fail(err, errlen, "internal: unhandled option %d", opt);
    }
}

/* Every --stages-at map has --pp stages and covers the model; then the
 * maps are packed as pp first layers each. */
static int check_stage_plan(train_options_t *o, char *err, size_t errlen)
{
    int layers = train_options_layer_count(o);
    if (o->stage_plan_count > 0 && o->pp < 2) {
        return flags_fail(err, errlen, "--stages-at needs a pipeline: give --pp S (S >= 2)");
    }
    for (int k = 0; k < o->stage_plan_count; k++) {
        if (o->stage_plan_stages[k] != o->pp || o->stage_plan_end[k] != layers) {
            return flags_fail(err, errlen,
                              "--stages-at %ld: the map has %d stages covering layers 0-%d; the "
                              "job has %d stages over layers 0-%d",
                              o->stage_plan_steps[k], o->stage_plan_stages[k],
                              o->stage_plan_end[k] - 1, o->pp, layers - 1);
        }
        memmove(o->stage_plan_first + (size_t)k * (size_t)o->pp,
                o->stage_plan_first + (size_t)k * TRAIN_MAX_LAYERS, (size_t)o->pp * sizeof(int));
    }
    return 0;
}

/* The flags of one model kind only: the MLP's (which --model gpt2 refuses)
 * and the language model's (which need --model gpt2). seen[opt - OPT_DATA]
 * says whether a flag was given. Sets the language model's defaults for
 * the flags they share and the user left out. */
static int check_model_flags(train_options_t *o, const unsigned char *seen, char *err,
                             size_t errlen)
{
    static const int mlp_only[] = {OPT_DATA,
                                   OPT_LAYERS,
                                   OPT_CLASSES,
                                   OPT_MOMENTUM,
                                   OPT_INIT_PARAMS,
                                   OPT_SAVE_PARAMS,
                                   OPT_EVAL_EVERY,
                                   OPT_STAGES_AT,
                                   OPT_NCCL,
                                   OPT_DATA_ON_DEVICE,
                                   OPT_BUCKET_MB,
                                   OPT_REPARTITION_HORIZON,
                                   OPT_REPARTITION_THRESHOLD};
    /* Each model has its optimizer: the MLP SGD, GPT-2 AdamW. */
    const char *own = o->lm.on ? "adamw" : "sgd";
    if (o->lm.optimizer != NULL && strcmp(o->lm.optimizer, own) != 0) {
        return flags_fail(err, errlen, "--optimizer %s: --model %s trains with %s", o->lm.optimizer,
                          o->lm.on ? "gpt2" : "mlp", own);
    }
    if (!o->lm.on) {
        for (int i = 1; i < LM_FLAG_COUNT; i++) {
            /* --optimizer and --zero apply to both models. */
            if (i == LM_FLAG_OPTIMIZER || strcmp(lm_flag_names[i], "zero") == 0) {
                continue;
            }
            if (seen[OPT_LM_FIRST + i - OPT_DATA]) {
                return flags_fail(err, errlen, "--%s needs --model gpt2", lm_flag_names[i]);
            }
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof mlp_only / sizeof mlp_only[0]; i++) {
        if (seen[mlp_only[i] - OPT_DATA]) {
            return flags_fail(err, errlen,
                              "--%s does not apply to --model gpt2 (it is the MLP's only, for "
                              "now)",
                              long_options[mlp_only[i] - OPT_DATA].name);
        }
    }
    if (!seen[OPT_BATCH - OPT_DATA]) {
        o->batch = 16;
    }
    if (!seen[OPT_LR - OPT_DATA]) {
        o->lr = 1e-3f;
    }
    if (!seen[OPT_WEIGHT_DECAY - OPT_DATA]) {
        o->weight_decay = 0.1f;
    }
    if (!seen[OPT_EPOCHS - OPT_DATA] && !seen[OPT_STEPS - OPT_DATA]) {
        o->steps = 100;
    }
    return lm_options_finish(&o->lm, err, errlen);
}

int train_options_parse(int argc, char **argv, train_options_t *o, char *err, size_t errlen)
{
    set_defaults(o);
    int seen_epochs = 0;
    unsigned char seen[OPT_COUNT - OPT_DATA] = {0};
    char flag[64];
    flags_begin();
    for (;;) {
        int opt = flags_next(argc, argv, long_options, OPT_DATA, flag, sizeof flag, err, errlen);
        if (opt == -1) {
            break;
        }
        if (opt == -2 || apply(opt, flag, optarg, o, &seen_epochs, err, errlen) != 0) {
            return -1;
        }
        seen[opt - OPT_DATA] = 1;
    }
    if (check_model_flags(o, seen, err, errlen) != 0) {
        return -1;
    }
    if (seen_epochs && o->steps >= 0) {
        return flags_fail(err, errlen, "--epochs and --steps: give one of them, not both");
    }
    /* A language model from a file: its units are known only once it is read. */
    const int shape_known = !(o->lm.on && o->lm.init_from != NULL);
    const char *noun = o->lm.on ? "units" : "layers";
    if (o->stage_count > 0) {
        int layers = train_options_layer_count(o);
        if (shape_known && o->stages_end != layers) {
            return flags_fail(err, errlen,
                              "--stages: the stages cover %s 0-%d but the model has %s 0-%d", noun,
                              o->stages_end - 1, noun, layers - 1);
        }
        if (o->pp == 1) {
            o->pp = o->stage_count; /* the map says how many stages */
        } else if (o->pp != o->stage_count) {
            return flags_fail(err, errlen, "--stages gives %d stages but --pp is %d",
                              o->stage_count, o->pp);
        }
    }
    if (shape_known && o->pp > train_options_layer_count(o)) {
        return flags_fail(err, errlen,
                          "--pp %d: the model has %d %s and every stage needs at least one", o->pp,
                          train_options_layer_count(o), noun);
    }
    if ((o->resume || o->checkpoint_every > 0) && o->checkpoint_dir == NULL) {
        return flags_fail(err, errlen, "%s needs --checkpoint-dir DIR",
                          o->resume ? "--resume" : "--checkpoint-every");
    }
    return check_stage_plan(o, err, errlen);
}

int train_options_layer_count(const train_options_t *o)
{
    /* The language model's pipeline units: the embedding, the blocks, the head. */
    return o->lm.on ? o->lm.shape.num_layers + 2 : 2 * o->hidden_count + 1;
}

/* A per-pipeline list (count 0: not given) has one value per pipeline. */
static int check_per_pipeline(const char *flag, int count, const train_options_t *o, int ranks,
                              char *err, size_t errlen)
{
    int groups = ranks / o->pp;
    if (count == 0 || count == groups) {
        return 0;
    }
    return o->pp == 1 ? flags_fail(err, errlen, "%s: %d sizes given but the job has %d ranks", flag,
                                   count, ranks)
                      : flags_fail(err, errlen,
                                   "%s: %d sizes given but the job has %d pipelines "
                                   "(%d ranks / --pp %d)",
                                   flag, count, groups, ranks, o->pp);
}

int train_options_check_ranks(const train_options_t *o, int ranks, char *err, size_t errlen)
{
    if (ranks % o->pp != 0) {
        return flags_fail(err, errlen,
                          "--pp %d: the job's %d ranks are not a whole number of %d-stage "
                          "pipelines",
                          o->pp, ranks, o->pp);
    }
    int groups = ranks / o->pp;
    if (o->device_count > 1 && o->device_count != ranks) {
        return flags_fail(err, errlen,
                          "--device: %d devices given but the job has %d ranks (give one for "
                          "all, or one per rank)",
                          o->device_count, ranks);
    }
    if (o->dp != 0 && o->dp != groups) {
        return flags_fail(err, errlen, "--dp %d x --pp %d is %d ranks but the job has %d", o->dp,
                          o->pp, o->dp * o->pp, ranks);
    }
    for (int i = 0; i < o->slowdown_count; i++) {
        if (o->slowdowns[i].rank >= ranks) {
            return flags_fail(err, errlen,
                              "--emulate-slowdown: rank %d, but the job has ranks 0..%d",
                              o->slowdowns[i].rank, ranks - 1);
        }
    }
    if (check_per_pipeline("--shards", o->shard_count, o, ranks, err, errlen) != 0 ||
        check_per_pipeline("--shard-min", o->shard_min_count, o, ranks, err, errlen) != 0 ||
        check_per_pipeline("--shard-max", o->shard_max_count, o, ranks, err, errlen) != 0) {
        return -1;
    }
    long sum = 0, lo = 0, hi = 0;
    for (int r = 0; r < groups; r++) {
        int min = o->shard_min_count > 0 ? o->shard_min[r] : 0;
        int max = o->shard_max_count > 0 ? o->shard_max[r] : o->batch;
        if (min > max) {
            return flags_fail(err, errlen, "--shard-min %d is above --shard-max %d for %s %d", min,
                              max, o->pp == 1 ? "rank" : "pipeline", r);
        }
        if (o->shard_count > 0 && (o->shards[r] < min || o->shards[r] > max)) {
            return flags_fail(err, errlen, "--shards: %d for %s %d is outside its caps [%d, %d]",
                              o->shards[r], o->pp == 1 ? "rank" : "pipeline", r, min, max);
        }
        sum += o->shard_count > 0 ? o->shards[r] : 0;
        lo += min;
        hi += max < o->batch ? max : o->batch;
    }
    if (o->shard_count > 0 && sum != o->batch) {
        return flags_fail(err, errlen, "--shards: the sizes sum to %ld but --batch is %d", sum,
                          o->batch);
    }
    if (lo > o->batch || hi < o->batch) {
        return flags_fail(err, errlen,
                          "--shard-min sums to %ld and --shard-max to %ld: --batch %d must lie "
                          "between",
                          lo, hi, o->batch);
    }
    return 0;
}
