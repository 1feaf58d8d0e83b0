/* The GPT-2 model's forward and backward passes (gpt2.h), one unit at a
 * time: the embedding, a transformer block, the head. Every step is a
 * kernel of the model's table, so the passes run wherever the table does;
 * nothing here reads or writes the buffers from the host.
 *
 * A block computes, with n = B · T rows and x its input (B, T, C), in two
 * halves, between which user layers may change the stream (mid = res2 when
 * there are none):
 *   ln1 = LN(x);  qkv = ln1 · qkvw^T + qkvb;  atty = attention(qkv)
 *   res2 = x + (atty · attprojw^T + attprojb)
 *   ln2 = LN(mid);  fch = ln2 · fcw^T + fcb;  fch_gelu = GELU(fch)
 *   res3 = mid + (fch_gelu · fcprojw^T + fcprojb)
 * and the head: lnf = LN(x);  logits = lnf · wte^T over Vp columns; the
 * cross-entropy over the first V. */
#include "gpt2.h"

static float *param(const bl_gpt2_t *g, int id, int layer)
{
    return bl_gpt2_slice(g, g->params, id, layer);
}

static float *grad(const bl_gpt2_t *g, int id, int layer)
{
    return bl_gpt2_slice(g, g->grads, id, layer);
}

/* The input of block `layer` (B, T, C): the stream after the unit before
 * it (the embedding or the previous block, and their user layers). */
static const float *block_input(const bl_gpt2_t *g, const bl_gpt2_acts_t *acts, int layer)
{
    return bl_gpt2_stream(g, acts, layer);
}

/* out (n, C) = x + f, a residual add. The kernel table has no element-wise
 * add, but embedding_forward over one sequence of n rows whose tokens are
 * 0, 1, ..., n − 1 (acts->rows) computes out[i] = f[i] + x[i] with f as the
 * token table and x as the position table: one pass, and bit for bit
 * PyTorch's x + f (a float sum does not depend on the order of its two
 * terms). out overlaps neither. */
static void residual_add(const bl_gpt2_t *g, const bl_gpt2_acts_t *acts, const float *x,
                         const float *f, float *out)
{
    g->kernels->embedding_forward(1, acts->B * acts->T, g->config.channels, acts->rows, f, x, out);
}

void bl_gpt2_embedding_forward(const bl_gpt2_t *g, bl_gpt2_acts_t *acts)
{
    /* encoded (B, T, C) = wte[tokens] + wpe[0 .. T). */
    g->kernels->embedding_forward(acts->B, acts->T, g->config.channels, acts->tokens,
                                  param(g, BL_GPT2_WTE, 0), param(g, BL_GPT2_WPE, 0),
                                  acts->encoded);
}

void bl_gpt2_block_forward_attention(const bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer)
{
    const bl_kernels_t *k = g->kernels;
    const int B = acts->B, T = acts->T, n = B * T;
    const int C = g->config.channels, NH = g->config.num_heads;
    const float *x = block_input(g, acts, layer);
    bl_gpt2_layer_acts_t *a = &acts->layers[layer];

    k->layernorm_forward(n, C, x, param(g, BL_GPT2_LN1W, layer), param(g, BL_GPT2_LN1B, layer),
                         a->ln1, a->ln1_mean, a->ln1_rstd);
    /* qkv (n, 3C) = ln1 (n, C) · qkvw^T + qkvb, qkvw (3C, C). */
    k->dense_forward(n, C, 3 * C, a->ln1, param(g, BL_GPT2_QKVW, layer),
                     param(g, BL_GPT2_QKVB, layer), a->qkv, 0);
    k->attention_forward(B, T, C, NH, a->qkv, a->atty, a->att);
    /* proj (n, C) = atty · attprojw^T + attprojb, then the residual. */
    k->dense_forward(n, C, C, a->atty, param(g, BL_GPT2_ATTPROJW, layer),
                     param(g, BL_GPT2_ATTPROJB, layer), acts->proj, 0);
    residual_add(g, acts, x, acts->proj, a->res2);
}

void bl_gpt2_block_forward_mlp(const bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer)
{
    const bl_kernels_t *k = g->kernels;
    const int n = acts->B * acts->T, C = g->config.channels;
    const float *mid = bl_gpt2_mid_stream(g, acts, layer);
    bl_gpt2_layer_acts_t *a = &acts->layers[layer];

    k->layernorm_forward(n, C, mid, param(g, BL_GPT2_LN2W, layer), param(g, BL_GPT2_LN2B, layer),
                         a->ln2, a->ln2_mean, a->ln2_rstd);
    /* fch (n, 4C) = ln2 · fcw^T + fcb, fcw (4C, C). */
    k->dense_forward(n, C, 4 * C, a->ln2, param(g, BL_GPT2_FCW, layer),
                     param(g, BL_GPT2_FCB, layer), a->fch, 0);
    k->gelu_forward((size_t)n * 4 * (size_t)C, a->fch, a->fch_gelu);
    /* proj (n, C) = fch_gelu (n, 4C) · fcprojw^T + fcprojb, fcprojw (C, 4C). */
    k->dense_forward(n, 4 * C, C, a->fch_gelu, param(g, BL_GPT2_FCPROJW, layer),
                     param(g, BL_GPT2_FCPROJB, layer), acts->proj, 0);
    residual_add(g, acts, mid, acts->proj, a->res3);
}

void bl_gpt2_block_forward(const bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer)
{
    bl_gpt2_block_forward_attention(g, acts, layer);
    bl_gpt2_block_forward_mlp(g, acts, layer);
}

double bl_gpt2_head_forward(const bl_gpt2_t *g, bl_gpt2_acts_t *acts)
{
    const bl_kernels_t *k = g->kernels;
    const bl_gpt2_config_t *c = &g->config;
    const int n = acts->B * acts->T, C = c->channels, Vp = c->padded_vocab_size;
    const float *x = block_input(g, acts, c->num_layers);

    k->layernorm_forward(n, C, x, param(g, BL_GPT2_LNFW, 0), param(g, BL_GPT2_LNFB, 0), acts->lnf,
                         acts->lnf_mean, acts->lnf_rstd);
    /* logits (n, Vp) = lnf (n, C) · wte^T, wte (Vp, C): the tied head. */
    k->gemm(0, 1, n, Vp, C, 1.0f, acts->lnf, C, param(g, BL_GPT2_WTE, 0), C, 0.0f, acts->logits,
            Vp);
    if (!acts->has_targets) {
        return 0.0;
    }
    /* The loss sum over the real columns, and dlogits for backward. */
    return k->vocab_xent(n, c->vocab_size, Vp, acts->logits, acts->targets, acts->dlogits);
}

void bl_gpt2_head_backward(bl_gpt2_t *g, bl_gpt2_acts_t *acts)
{
    const bl_kernels_t *k = g->kernels;
    const bl_gpt2_config_t *c = &g->config;
    const int n = acts->B * acts->T, C = c->channels, Vp = c->padded_vocab_size;
    const float *x = block_input(g, acts, c->num_layers);

    /* dwte (Vp, C) += dlogits^T (Vp, n) · lnf (n, C); the padding columns
     * of dlogits are 0, so the padding rows of wte receive nothing. */
    k->gemm(1, 0, Vp, C, n, 1.0f, acts->dlogits, Vp, acts->lnf, C, 1.0f, grad(g, BL_GPT2_WTE, 0),
            C);
    /* dlnf (n, C) = dlogits (n, Vp) · wte (Vp, C), into dln. */
    k->gemm(0, 0, n, C, Vp, 1.0f, acts->dlogits, Vp, param(g, BL_GPT2_WTE, 0), C, 0.0f, acts->dln,
            C);
    /* The residual stream's gradient starts here (accumulate 0). */
    k->layernorm_backward(n, C, acts->dln, x, param(g, BL_GPT2_LNFW, 0), acts->lnf_mean,
                          acts->lnf_rstd, acts->dres, grad(g, BL_GPT2_LNFW, 0),
                          grad(g, BL_GPT2_LNFB, 0), 0);
}

void bl_gpt2_block_backward_mlp(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer)
{
    const bl_kernels_t *k = g->kernels;
    const int n = acts->B * acts->T, C = g->config.channels;
    const float *mid = bl_gpt2_mid_stream(g, acts, layer);
    const bl_gpt2_layer_acts_t *a = &acts->layers[layer];

    /* dres holds d loss / d res3. res3 = mid + proj: d proj = dres, which
     * dense_backward reads without changing (no ReLU), and dres flows on
     * to mid unchanged. dwide (n, 4C) = d fch_gelu, then d fch. */
    k->dense_backward(n, 4 * C, C, a->fch_gelu, param(g, BL_GPT2_FCPROJW, layer), NULL, acts->dres,
                      acts->dwide, grad(g, BL_GPT2_FCPROJW, layer), grad(g, BL_GPT2_FCPROJB, layer),
                      0, 1);
    k->gelu_backward((size_t)n * 4 * (size_t)C, a->fch, acts->dwide, acts->dwide);
    /* dln (n, C) = d ln2; its LayerNorm adds d mid into dres. */
    k->dense_backward(n, C, 4 * C, a->ln2, param(g, BL_GPT2_FCW, layer), NULL, acts->dwide,
                      acts->dln, grad(g, BL_GPT2_FCW, layer), grad(g, BL_GPT2_FCB, layer), 0, 1);
    k->layernorm_backward(n, C, acts->dln, mid, param(g, BL_GPT2_LN2W, layer), a->ln2_mean,
                          a->ln2_rstd, acts->dres, grad(g, BL_GPT2_LN2W, layer),
                          grad(g, BL_GPT2_LN2B, layer), 1);
}

void bl_gpt2_block_backward_attention(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer)
{
    const bl_kernels_t *k = g->kernels;
    const int B = acts->B, T = acts->T, n = B * T;
    const int C = g->config.channels, NH = g->config.num_heads;
    const float *x = block_input(g, acts, layer);
    const bl_gpt2_layer_acts_t *a = &acts->layers[layer];

    /* res2 = x + proj, as above: dln = d atty, dwide (n, 3C) = d qkv. */
    k->dense_backward(n, C, C, a->atty, param(g, BL_GPT2_ATTPROJW, layer), NULL, acts->dres,
                      acts->dln, grad(g, BL_GPT2_ATTPROJW, layer), grad(g, BL_GPT2_ATTPROJB, layer),
                      0, 1);
    k->attention_backward(B, T, C, NH, acts->dln, a->qkv, a->att, acts->dwide, acts->scratch);
    /* dln = d ln1; its LayerNorm adds d x into dres. */
    k->dense_backward(n, C, 3 * C, a->ln1, param(g, BL_GPT2_QKVW, layer), NULL, acts->dwide,
                      acts->dln, grad(g, BL_GPT2_QKVW, layer), grad(g, BL_GPT2_QKVB, layer), 0, 1);
    k->layernorm_backward(n, C, acts->dln, x, param(g, BL_GPT2_LN1W, layer), a->ln1_mean,
                          a->ln1_rstd, acts->dres, grad(g, BL_GPT2_LN1W, layer),
                          grad(g, BL_GPT2_LN1B, layer), 1);
}

void bl_gpt2_block_backward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, int layer)
{
    bl_gpt2_block_backward_mlp(g, acts, layer);
    bl_gpt2_block_backward_attention(g, acts, layer);
}

void bl_gpt2_embedding_backward(bl_gpt2_t *g, bl_gpt2_acts_t *acts)
{
    /* dres = d loss / d encoded: each row goes to its token's row of the
     * tied dwte (beside the head's share) and to its position's dwpe. */
    g->kernels->embedding_backward(acts->B, acts->T, g->config.channels, acts->tokens, acts->dres,
                                   grad(g, BL_GPT2_WTE, 0), grad(g, BL_GPT2_WPE, 0));
}
