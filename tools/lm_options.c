/* ballast-train's language-model flags (lm_options.h). */
#include <string.h>

#include "flags.h"
#include "lm_options.h"

const char *const lm_flag_names[LM_FLAG_COUNT] = {
    "model",          "n-layer",        "n-head",     "n-embd", "seq-len",    "vocab",
    "max-seq-len",    "init-from",      "text",       "tokens", "val-tokens", "val-fraction",
    "val-sequences",  "val-every",      "save-model", "beta1",  "beta2",      "eps",
    "clip-grad-norm", "lr-schedule",    "warmup",     "lr-min", "optimizer",  "adapter",
    "token-shift",    "adapter-inside", "precision",  "zero",
};

void lm_options_defaults(lm_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->shape =
        (bl_gpt2_config_t){.vocab_size = 256, .num_layers = 4, .num_heads = 4, .channels = 256};
    o->seq_len = 128;
    o->val_fraction = 0.1;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->clip = 1.0f;
    o->schedule = BL_LR_CONSTANT;
}

/* A float flag in [lo, hi] (or [lo, hi) when hi_open). */
static int real(const char *flag, const char *arg, double lo, double hi, int hi_open, float *out,
                char *err, size_t errlen)
{
    double v = 0.0;
    if (flags_double(flag, arg, lo, hi, hi_open, &v, err, errlen) != 0) {
        return -1;
    }
    *out = (float)v;
    return 0;
}

/* --adapter UNIT:RANK (shift 0), --token-shift UNIT (shift 1) or
 * --adapter-inside BLOCK:RANK (inside 1). */
static int add_layer(int shift, int inside, const char *flag, const char *arg, lm_options_t *o,
                     char *err, size_t errlen)
{
    if (o->layer_count == BL_LM_MAX_LAYERS) {
        return flags_fail(err, errlen, "%s: at most %d user layers", flag, BL_LM_MAX_LAYERS);
    }
    struct lm_layer_spec *l = &o->layers[o->layer_count];
    char unit[32];
    const char *colon = strchr(arg, ':');
    if (shift ? colon != NULL : colon == NULL || (size_t)(colon - arg) >= sizeof unit) {
        return flags_fail(err, errlen, "%s: '%s' is not %s", flag, arg,
                          shift ? "a unit number" : "UNIT:RANK");
    }
    const size_t n = shift ? strlen(arg) : (size_t)(colon - arg);
    if (n >= sizeof unit) {
        return flags_fail(err, errlen, "%s: '%s' is not a unit number", flag, arg);
    }
    memcpy(unit, arg, n);
    unit[n] = '\0';
    *l = (struct lm_layer_spec){.shift = shift, .inside = inside};
    if (flags_int(flag, unit, 0, 1024, &l->after, err, errlen) != 0 ||
        (!shift && flags_int(flag, colon + 1, 1, 65536, &l->rank, err, errlen) != 0)) {
        return -1;
    }
    o->layer_count++;
    return 0;
}

int lm_options_apply(int index, const char *flag, const char *arg, lm_options_t *o, char *err,
                     size_t errlen)
{
    bl_gpt2_config_t *s = &o->shape;
    switch (index) {
    case 0:
        if (strcmp(arg, "gpt2") == 0 || strcmp(arg, "mlp") == 0) {
            o->on = strcmp(arg, "gpt2") == 0;
            return 0;
        }
        return flags_fail(err, errlen, "%s: '%s' is neither mlp nor gpt2", flag, arg);
    case 1:
        return flags_int(flag, arg, 1, 1024, &s->num_layers, err, errlen);
    case 2:
        return flags_int(flag, arg, 1, 1024, &s->num_heads, err, errlen);
    case 3:
        return flags_int(flag, arg, 1, 65536, &s->channels, err, errlen);
    case 4:
        return flags_int(flag, arg, 1, 65536, &o->seq_len, err, errlen);
    case 5:
        return flags_int(flag, arg, 1, 65536, &s->vocab_size, err, errlen);
    case 6:
        return flags_int(flag, arg, 1, 65536, &s->max_seq_len, err, errlen);
    case 7:
        o->init_from = arg;
        return 0;
    case 8:
        o->text = arg;
        return 0;
    case 9:
        o->tokens = arg;
        return 0;
    case 10:
        o->val_tokens = arg;
        return 0;
    case 11:
        return flags_double(flag, arg, 0.0, 0.9, 0, &o->val_fraction, err, errlen);
    case 12:
        return flags_long(flag, arg, 0, 1L << 40, &o->val_sequences, err, errlen);
    case 13:
        return flags_long(flag, arg, 0, 1L << 40, &o->val_every, err, errlen);
    case 14:
        o->save_model = arg;
        return 0;
    case 15:
        return real(flag, arg, 0.0, 1.0, 1, &o->beta1, err, errlen);
    case 16:
        return real(flag, arg, 0.0, 1.0, 1, &o->beta2, err, errlen);
    case 17:
        return real(flag, arg, 1e-30, 1.0, 0, &o->eps, err, errlen);
    case 18:
        return real(flag, arg, 0.0, 1e12, 0, &o->clip, err, errlen);
    case 19:
        if (strcmp(arg, "constant") == 0 || strcmp(arg, "cosine") == 0) {
            o->schedule = strcmp(arg, "cosine") == 0 ? BL_LR_COSINE : BL_LR_CONSTANT;
            return 0;
        }
        return flags_fail(err, errlen, "%s: '%s' is neither constant nor cosine", flag, arg);
    case 20:
        return flags_long(flag, arg, 0, 1L << 40, &o->warmup, err, errlen);
    case 21:
        return real(flag, arg, 0.0, 1e6, 0, &o->lr_min, err, errlen);
    case LM_FLAG_OPTIMIZER:
        if (strcmp(arg, "sgd") == 0 || strcmp(arg, "adamw") == 0) {
            o->optimizer = arg;
            return 0;
        }
        return flags_fail(err, errlen, "%s: '%s' is neither sgd nor adamw", flag, arg);
    case 23:
    case 24:
        return add_layer(index == 24, 0, flag, arg, o, err, errlen);
    case 25:
        return add_layer(0, 1, flag, arg, o, err, errlen);
    case 26:
        if (strcmp(arg, "fp32") == 0 || strcmp(arg, "bf16") == 0) {
            o->precision = strcmp(arg, "bf16") == 0 ? BL_PRECISION_BF16 : BL_PRECISION_FP32;
            return 0;
        }
        return flags_fail(err, errlen, "%s: '%s' is neither fp32 nor bf16", flag, arg);
    case 27:
        if (strcmp(arg, "on") == 0 || strcmp(arg, "off") == 0) {
            o->zero = strcmp(arg, "on") == 0;
            return 0;
        }
        return flags_fail(err, errlen, "%s: '%s' is neither on nor off", flag, arg);
    default:
        return flags_fail(err, errlen, "internal: unhandled language-model flag %d", index);
    }
}

int lm_options_finish(lm_options_t *o, char *err, size_t errlen)
{
    if ((o->text != NULL) + (o->tokens != NULL) != 1) {
        return flags_fail(err, errlen,
                          "--model gpt2 needs the training text: give --text FILE or --tokens "
                          "FILE (one of them)");
    }
    if (o->init_from != NULL) {
        return 0; /* the file's shape wins */
    }
    if (o->shape.max_seq_len == 0) {
        o->shape.max_seq_len = o->seq_len;
    }
    if (o->seq_len > o->shape.max_seq_len) {
        return flags_fail(err, errlen, "--seq-len %d exceeds --max-seq-len %d", o->seq_len,
                          o->shape.max_seq_len);
    }
    if (o->shape.channels % o->shape.num_heads != 0) {
        return flags_fail(err, errlen, "--n-head %d does not divide --n-embd %d",
                          o->shape.num_heads, o->shape.channels);
    }
    /* llm.c pads the vocabulary to a multiple of 128 rows. */
    o->shape.padded_vocab_size = (o->shape.vocab_size + 127) / 128 * 128;
    return 0;
}
