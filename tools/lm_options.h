/* ballast-train's language-model flags (--model gpt2 and what goes with it),
 * parsed by train_options.c's loop and applied here. */
#ifndef BL_LM_OPTIONS_H
#define BL_LM_OPTIONS_H

#include <stddef.h>

#include "ballast.h"

typedef struct lm_options {
    int on;                 /* --model gpt2 (--model mlp: 0) */
    bl_gpt2_config_t shape; /* --n-layer, --n-head, --n-embd, --vocab, --max-seq-len */
    int seq_len;            /* --seq-len T */
    const char *init_from;  /* --init-from: an llm.c model file */
    const char *text;       /* --text: a plain text file, tokenized byte by byte */
    const char *tokens;     /* --tokens: an llm.c token file */
    const char *val_tokens; /* --val-tokens: an llm.c token file */
    double val_fraction;    /* --val-fraction: the stream's tail held out when no val file */
    long val_sequences;     /* --val-sequences: the most sequences one evaluation reads; 0: all */
    long val_every;         /* --val-every: steps between evaluations; 0: only at the end */
    const char *save_model; /* --save-model: the llm.c model file written at the end */
    float beta1, beta2, eps;
    float clip;            /* --clip-grad-norm; 0: none */
    bl_lr_kind_t schedule; /* --lr-schedule */
    long warmup;           /* --warmup */
    float lr_min;          /* --lr-min */
    const char *optimizer; /* --optimizer sgd|adamw as given, or NULL (the model's own) */
    /* --adapter UNIT:RANK and --token-shift UNIT: the user layers of
     * lm_layers.h in the stream, in the command line's order. */
    struct lm_layer_spec {
        int shift;  /* 1: a token shift; 0: an adapter */
        int after;  /* the unit it follows (0 .. L) */
        int rank;   /* an adapter's bottleneck width */
        int inside; /* 1: inside block `after`, between attention and MLP */
    } layers[BL_LM_MAX_LAYERS];
    int layer_count;
    int precision; /* --precision: bl_precision_t */
    int zero;      /* --zero on|off: 1 ZeRO-1 (bl_lm_config_t.zero), 0 off (default) */
} lm_options_t;

/* The flag names this file handles, in the order of train_options.c's
 * option table, and how many there are. */
extern const char *const lm_flag_names[];
#define LM_FLAG_COUNT     28
#define LM_FLAG_OPTIMIZER 22 /* --optimizer, which both models take */

void lm_options_defaults(lm_options_t *o);

/* Applies flag lm_flag_names[index] with value arg; 0, or -1 with a one-line
 * message in err naming the flag. */
int lm_options_apply(int index, const char *flag, const char *arg, lm_options_t *o, char *err,
                     size_t errlen);

/* The checks after parsing that need no job: a text or token file is given
 * (not both), and max_seq_len defaults to seq_len. */
int lm_options_finish(lm_options_t *o, char *err, size_t errlen);

#endif /* BL_LM_OPTIONS_H */
