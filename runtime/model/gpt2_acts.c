/* The activations of a GPT-2 model for one batch shape (gpt2.h): one
 * device allocation cut into the buffers of bl_gpt2_acts_t. The cut is
 * made twice, first to count the floats (with overflow checks, since B, T
 * and the config come from callers and files), then to hand out pointers. */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "gpt2.h"
#include "gpt2_impl.h"

/* A cursor over the allocation: base is NULL while counting. */
typedef struct carve {
    float *base;
    uint64_t used; /* floats handed out so far */
    int overflow;  /* a count or the total overflowed */
} carve_t;

/* The product a · b · c, or UINT64_MAX with c->overflow set when it does
 * not fit. */
static uint64_t mul3(carve_t *cv, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t ab = 0, abc = 0;
    if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc)) {
        cv->overflow = 1;
        return UINT64_MAX;
    }
    return abc;
}

/* Hands out count floats (NULL while counting). */
static float *take(carve_t *cv, uint64_t count)
{
    float *p = cv->base != NULL ? cv->base + cv->used : NULL;
    if (count > UINT64_MAX - cv->used) {
        cv->overflow = 1;
        return NULL;
    }
    cv->used += count;
    return p;
}

/* Cuts every buffer of acts out of cv, in one fixed order. The int32 id
 * arrays come last; an int32 has a float's size and alignment. With
 * acts->layers NULL it only counts (bl_gpt2_acts_nbytes). */
static void cut(const bl_gpt2_t *g, int B, int T, carve_t *cv, bl_gpt2_acts_t *acts)
{
    const bl_gpt2_config_t *c = &g->config;
    const uint64_t n = (uint64_t)B * (uint64_t)T; /* rows, which fit an int */
    const uint64_t nc = mul3(cv, n, (uint64_t)c->channels, 1);
    acts->encoded = take(cv, nc);
    bl_gpt2_layer_acts_t counting;
    for (int l = 0; l < c->num_layers; l++) {
        bl_gpt2_layer_acts_t *la = acts->layers != NULL ? &acts->layers[l] : &counting;
        la->ln1 = take(cv, nc);
        la->ln1_mean = take(cv, n);
        la->ln1_rstd = take(cv, n);
        la->qkv = take(cv, mul3(cv, nc, 3, 1));
        la->atty = take(cv, nc);
        la->att = take(cv, mul3(cv, n, (uint64_t)c->num_heads, (uint64_t)T));
        la->res2 = take(cv, nc);
        la->ln2 = take(cv, nc);
        la->ln2_mean = take(cv, n);
        la->ln2_rstd = take(cv, n);
        la->fch = take(cv, mul3(cv, nc, 4, 1));
        la->fch_gelu = take(cv, mul3(cv, nc, 4, 1));
        la->res3 = take(cv, nc);
    }
    acts->lnf = take(cv, nc);
    acts->lnf_mean = take(cv, n);
    acts->lnf_rstd = take(cv, n);
    acts->logits = take(cv, mul3(cv, n, (uint64_t)c->padded_vocab_size, 1));
    acts->dlogits = take(cv, mul3(cv, n, (uint64_t)c->padded_vocab_size, 1));
    acts->proj = take(cv, nc);
    acts->dres = take(cv, nc);
    acts->dln = take(cv, nc);
    acts->dwide = take(cv, mul3(cv, nc, 4, 1));
    acts->scratch = take(cv, mul3(cv, (uint64_t)T, (uint64_t)T, 1));
    for (int k = 0; k < g->user_count; k++) {
        acts->user_out[k] = take(cv, nc);
    }
    acts->tokens = (int32_t *)take(cv, n);
    acts->targets = (int32_t *)take(cv, n);
    acts->rows = (int32_t *)take(cv, n);
}

double bl_gpt2_acts_nbytes(const bl_gpt2_t *g, int B, int T)
{
    bl_gpt2_acts_t shape = {0}; /* layers NULL: cut only counts */
    carve_t count = {0};
    cut(g, B, T, &count, &shape);
    /* The device allocation, the host array of per-layer pointers and the
     * residual adds' row numbers, as bl_gpt2_acts_init allocates them. */
    return (double)count.used * sizeof(float) +
           (double)g->config.num_layers * sizeof(bl_gpt2_layer_acts_t) +
           (double)B * (double)T * sizeof(int32_t);
}

double bl_gpt2_acts_units_nbytes(const bl_gpt2_t *g, int B, int T, int first, int last)
{
    const bl_gpt2_config_t *c = &g->config;
    const int L = c->num_layers;
    const double n = (double)B * T, nc = n * c->channels;
    /* The buffers every pass shares: proj, dres, dln, dwide, the attention
     * scratch, the user layers' outputs, the ids and the row numbers. */
    double floats = 7.0 * nc + (double)T * T + (double)g->user_count * nc + 3.0 * n;
    /* The stage's input: the embedding's output, or the stream it receives. */
    floats += nc;
    const int lo = first > 1 ? first - 1 : 0, hi = last - 1 < L ? last - 1 : L;
    if (hi > lo) {
        /* Each block's buffers, as cut() hands them out. */
        floats += (double)(hi - lo) * (16.0 * nc + 4.0 * n + n * c->num_heads * T);
    }
    if (last == L + 2) {
        floats += nc + 2.0 * n + 2.0 * n * c->padded_vocab_size; /* lnf, logits, dlogits */
    }
    return floats * sizeof(float) + (double)L * sizeof(bl_gpt2_layer_acts_t) + n * sizeof(int32_t);
}

bl_status_t bl_gpt2_acts_init(const bl_gpt2_t *g, int B, int T, bl_gpt2_acts_t *acts,
                              bl_error_t *err)
{
    if (g == NULL || acts == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_acts_init: %s is NULL",
                            g == NULL ? "g" : "acts");
    }
    memset(acts, 0, sizeof *acts);
    const bl_gpt2_config_t *c = &g->config;
    if (B <= 0 || T <= 0) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "GPT-2 activations: batch B = %d and sequence length T = %d must be "
                            "positive",
                            B, T);
    }
    if (T > c->max_seq_len) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "GPT-2 activations: sequence length T = %d exceeds max_seq_len maxT "
                            "= %d",
                            T, c->max_seq_len);
    }
    if ((int64_t)B * T > INT_MAX) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "GPT-2 activations: B · T = %d · %d rows exceed the kernels' int "
                            "dimensions",
                            B, T);
    }
    const int n = B * T;
    int32_t *rows = NULL;
    bl_status_t s = BL_OK;
    acts->layers = bl_mem_array_zeroed(&g->alloc, (size_t)c->num_layers, sizeof *acts->layers);
    if (acts->layers == NULL) {
        s = bl_error_set(err, BL_ERR_NO_MEM, "GPT-2 activations: out of memory");
        goto fail;
    }
    carve_t count = {0};
    cut(g, B, T, &count, acts);
    if (count.overflow || count.used > SIZE_MAX / sizeof(float)) {
        s = bl_error_set(err, BL_ERR_NO_MEM,
                         "GPT-2 activations: B = %d, T = %d with this config overflow memory", B,
                         T);
        goto fail;
    }
    acts->mem = bl_gpt2_dev_alloc(g, (size_t)count.used * sizeof(float));
    rows = bl_mem_array(&g->alloc, (size_t)n, sizeof *rows);
    if (acts->mem == NULL || rows == NULL) {
        s = bl_error_set(err, BL_ERR_NO_MEM,
                         "GPT-2 activations: out of memory for %llu floats (B = %d, T = %d)",
                         (unsigned long long)count.used, B, T);
        goto fail;
    }
    /* Touch every page now: the first step would otherwise fault them in
     * one by one (about half a second for the default model on a VM),
     * which slows it and makes the balancer see a slow rank that is not.
     * A stage-local model (one that holds some units only) touches its own
     * units' buffers only (bl_gpt2_acts_units_nbytes), so the rest never
     * takes memory: its pages come on first use instead (fresh memory,
     * zeros). */
    const size_t nbytes = (size_t)count.used * sizeof(float);
    if (g->spanned && (g->held_first > 0 || g->held_last < g->config.num_layers + 2)) {
        /* Nothing: see above. */
    } else if (g->memory == NULL) {
        memset(acts->mem, 0, nbytes);
    } else if (g->memory->zero(acts->mem, nbytes) != 0) {
        s = bl_error_set(err, BL_ERR_CUDA, "GPT-2 activations: zeroing on device '%s' failed",
                         g->memory->name);
        goto fail;
    }
    carve_t give = {.base = acts->mem};
    cut(g, B, T, &give, acts);
    acts->B = B;
    acts->T = T;
    acts->capacity = B;
    for (int i = 0; i < n; i++) {
        rows[i] = i;
    }
    if (bl_gpt2_dev_put(g, acts->rows, rows, (size_t)n * sizeof *rows) != 0) {
        s = bl_error_set(err, BL_ERR_CUDA, "GPT-2 activations: uploading to device '%s' failed",
                         g->memory->name);
        goto fail;
    }
    bl_mem_free(&g->alloc, rows);
    return BL_OK;
fail:
    bl_mem_free(&g->alloc, rows);
    bl_gpt2_acts_free(g, acts);
    return s;
}

bl_status_t bl_gpt2_acts_set_batch(bl_gpt2_acts_t *acts, int B, bl_error_t *err)
{
    if (acts == NULL || B < 1 || B > acts->capacity) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "GPT-2 activations: a batch of %d sequences is outside 1 .. %d, "
                            "the batch the buffers were made for",
                            B, acts != NULL ? acts->capacity : 0);
    }
    acts->B = B;
    return BL_OK;
}

void bl_gpt2_acts_view(const bl_gpt2_t *g, const bl_gpt2_acts_t *whole, int b0, int B,
                       bl_gpt2_layer_acts_t *layers, bl_gpt2_acts_t *view)
{
    const bl_gpt2_config_t *c = &g->config;
    const size_t T = (size_t)whole->T, C = (size_t)c->channels, NH = (size_t)c->num_heads;
    const size_t seq = (size_t)b0 * T; /* rows before the view's first */
    *view = *whole;
    view->B = B;
    view->capacity = B;
    view->layers = layers;
    view->encoded = whole->encoded + seq * C;
    for (int l = 0; l < c->num_layers; l++) {
        const bl_gpt2_layer_acts_t *w = &whole->layers[l];
        layers[l] = (bl_gpt2_layer_acts_t){.ln1 = w->ln1 + seq * C,
                                           .ln1_mean = w->ln1_mean + seq,
                                           .ln1_rstd = w->ln1_rstd + seq,
                                           .qkv = w->qkv + seq * 3 * C,
                                           .atty = w->atty + seq * C,
                                           .att = w->att + seq * NH * T,
                                           .res2 = w->res2 + seq * C,
                                           .ln2 = w->ln2 + seq * C,
                                           .ln2_mean = w->ln2_mean + seq,
                                           .ln2_rstd = w->ln2_rstd + seq,
                                           .fch = w->fch + seq * 4 * C,
                                           .fch_gelu = w->fch_gelu + seq * 4 * C,
                                           .res3 = w->res3 + seq * C};
    }
    view->lnf = whole->lnf + seq * C;
    view->lnf_mean = whole->lnf_mean + seq;
    view->lnf_rstd = whole->lnf_rstd + seq;
    view->logits = whole->logits + seq * (size_t)c->padded_vocab_size;
    view->dlogits = whole->dlogits + seq * (size_t)c->padded_vocab_size;
    view->proj = whole->proj + seq * C;
    view->dres = whole->dres + seq * C;
    view->dln = whole->dln + seq * C;
    view->dwide = whole->dwide + seq * 4 * C;
    for (int k = 0; k < g->user_count; k++) {
        view->user_out[k] = whole->user_out[k] + seq * C;
    }
    view->tokens = whole->tokens + seq;
    view->targets = whole->targets + seq;
    view->mem = NULL; /* owns nothing */
}

void bl_gpt2_acts_free(const bl_gpt2_t *g, bl_gpt2_acts_t *acts)
{
    if (acts == NULL) {
        return;
    }
    if (g != NULL) {
        bl_gpt2_dev_free(g, acts->mem);
        bl_mem_free(&g->alloc, acts->layers);
    }
    memset(acts, 0, sizeof *acts);
}
