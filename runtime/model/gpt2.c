/* A GPT-2 model's memory (gpt2.h): the model and its parameters, GPT-2's
 * initialisation, the copies between the host and the model's device, the
 * activations of a batch shape, and the checked entry points of the passes
 * (the passes themselves are in gpt2_passes.c). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "gpt2.h"
#include "gpt2_impl.h"

#define INIT_STD 0.02 /* GPT-2's initial standard deviation */

void *bl_gpt2_dev_alloc(const bl_gpt2_t *g, size_t nbytes)
{
    return g->memory != NULL ? g->memory->alloc(nbytes) : bl_mem_alloc(&g->alloc, nbytes);
}

void bl_gpt2_dev_free(const bl_gpt2_t *g, void *ptr)
{
    if (g->memory != NULL) {
        g->memory->release(ptr);
    } else {
        bl_mem_free(&g->alloc, ptr);
    }
}

int bl_gpt2_dev_put(const bl_gpt2_t *g, void *dst, const void *src, size_t nbytes)
{
    if (g->memory != NULL) {
        return g->memory->to_device(dst, src, nbytes);
    }
    memcpy(dst, src, nbytes);
    return 0;
}

static bl_status_t copy_failed(const bl_gpt2_t *g, const char *what, bl_error_t *err)
{
    return bl_error_set(err, BL_ERR_CUDA, "GPT-2 model: %s on device '%s' failed", what,
                        g->memory->name);
}

bl_status_t bl_gpt2_create(const bl_gpt2_config_t *cfg, const bl_kernels_t *kernels,
                           const bl_device_memory_t *memory, const bl_allocator_t *a,
                           bl_error_t *err, bl_gpt2_t **out)
{
    return bl_gpt2_create_with(cfg, kernels, memory, a, 0, err, out);
}

bl_status_t bl_gpt2_create_with(const bl_gpt2_config_t *cfg, const bl_kernels_t *kernels,
                                const bl_device_memory_t *memory, const bl_allocator_t *a,
                                unsigned flags, bl_error_t *err, bl_gpt2_t **out)
{
    if (cfg == NULL || kernels == NULL || out == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_create: %s is NULL",
                            cfg == NULL       ? "cfg"
                            : kernels == NULL ? "kernels"
                                              : "out");
    }
    *out = NULL;
    /* The members the passes and the optimizer call; a table that lacks
     * one (a backend without the transformer's kernels) is refused. */
    const struct {
        const char *name;
        int present;
    } need[] = {
        {"gemm", kernels->gemm != NULL},
        {"dense_forward", kernels->dense_forward != NULL},
        {"dense_backward", kernels->dense_backward != NULL},
        {"embedding_forward", kernels->embedding_forward != NULL},
        {"embedding_backward", kernels->embedding_backward != NULL},
        {"layernorm_forward", kernels->layernorm_forward != NULL},
        {"layernorm_backward", kernels->layernorm_backward != NULL},
        {"gelu_forward", kernels->gelu_forward != NULL},
        {"gelu_backward", kernels->gelu_backward != NULL},
        {"attention_forward", kernels->attention_forward != NULL},
        {"attention_backward", kernels->attention_backward != NULL},
        {"vocab_xent", kernels->vocab_xent != NULL},
        {"adamw_update", kernels->adamw_update != NULL},
        {"sum_squares", kernels->sum_squares != NULL},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (!need[i].present) {
            return bl_error_set(err, BL_ERR_INVALID_ARG,
                                "GPT-2 model: kernel table '%s' has no %s kernel", kernels->name,
                                need[i].name);
        }
    }
    bl_gpt2_t *g = bl_mem_alloc(a, sizeof *g);
    if (g == NULL) {
        return bl_error_set(err, BL_ERR_NO_MEM, "GPT-2 model: out of memory for the handle");
    }
    memset(g, 0, sizeof *g);
    g->config = *cfg;
    g->kernels = kernels;
    g->memory = memory;
    if (a != NULL) {
        g->alloc = *a;
    }
    bl_status_t s = bl_gpt2_tensors(cfg, g->tensors, &g->param_count, err);
    if (s != BL_OK) {
        goto fail;
    }
    g->gpt_param_count = g->param_count;
    /* params, grads, m and v in one allocation (m and v only with the
     * moments), each zeroed: memory, or a span of address space. */
    const size_t P = g->param_count;
    const size_t arrays = flags & BL_GPT2_NO_MOMENTS ? 2 : 4;
    if (P > SIZE_MAX / (4 * sizeof(float))) {
        s = bl_error_set(err, BL_ERR_NO_MEM, "GPT-2 model: 4 × %zu floats overflow", P);
        goto fail;
    }
    g->held_last = cfg->num_layers + 2;
    if (flags & BL_GPT2_SPANS) {
        g->spanned = 1;
        s = memory != NULL ? bl_error_set(err, BL_ERR_INVALID_ARG,
                                          "GPT-2 model: a stage-local model (BL_GPT2_SPANS) "
                                          "lives in host memory only, not on device '%s'",
                                          memory->name)
                           : bl_gpt2_reserve(g, (int)arrays, err);
        if (s != BL_OK) {
            goto fail;
        }
        *out = g;
        return BL_OK;
    }
    g->params = bl_gpt2_dev_alloc(g, arrays * P * sizeof(float));
    if (g->params == NULL) {
        s = bl_error_set(err, BL_ERR_NO_MEM,
                         "GPT-2 model: out of memory for %zu × %zu floats (parameters, "
                         "gradients%s)",
                         arrays, P, arrays == 4 ? " and AdamW's moments" : "");
        goto fail;
    }
    g->grads = g->params + P;
    g->adam_m = arrays == 4 ? g->grads + P : NULL;
    g->adam_v = arrays == 4 ? g->adam_m + P : NULL;
    if (memory == NULL) {
        memset(g->params, 0, arrays * P * sizeof(float));
    } else if (memory->zero(g->params, arrays * P * sizeof(float)) != 0) {
        s = copy_failed(g, "zeroing the parameters", err);
        goto fail;
    }
    *out = g;
    return BL_OK;
fail:
    bl_gpt2_destroy(g);
    return s;
}

void bl_gpt2_destroy(bl_gpt2_t *g)
{
    if (g == NULL) {
        return;
    }
    if (g->spanned) {
        bl_span_release(&g->span);
    } else {
        bl_gpt2_dev_free(g, g->params);
    }
    bl_allocator_t a = g->alloc;
    bl_mem_free(&a, g);
}

/* A draw from N(0, std²) by the Box–Muller transform; u1 lies in (0, 1],
 * so the logarithm is finite. */
static float normal(bl_rng_t *r, double std)
{
    const double u1 = 1.0 - (double)bl_rng_float(r);
    const double u2 = (double)bl_rng_float(r);
    return (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

bl_status_t bl_gpt2_init_params(bl_gpt2_t *g, uint64_t seed, bl_error_t *err)
{
    if (g == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_init_params: g is NULL");
    }
    float *host = g->params;
    if (g->memory != NULL) {
        host = bl_mem_array(&g->alloc, g->gpt_param_count, sizeof(float));
        if (host == NULL) {
            return bl_error_set(err, BL_ERR_NO_MEM,
                                "GPT-2 model: out of memory for %zu staged parameters",
                                g->gpt_param_count);
        }
    }
    const bl_gpt2_config_t *c = &g->config;
    const double proj_std = INIT_STD / sqrt(2.0 * c->num_layers);
    const uint64_t base = bl_seed_mix(seed, BL_SEED_DOMAIN_INIT);
    for (int id = 0; id < BL_GPT2_TENSOR_COUNT; id++) {
        float *w = host + g->tensors[id].offset;
        size_t count = g->tensors[id].count;
        /* The elements [lo, hi) are held (all of them but on a stage). */
        size_t lo = 0, hi = count;
        if (g->spanned && !bl_gpt2_held_part(g, id, &lo, &hi)) {
            continue;
        }
        double std = 0.0; /* 0: a bias (0) or a LayerNorm weight (1) */
        switch (id) {
        case BL_GPT2_WTE:
            /* The padding rows [V, Vp) stay 0; only the real rows draw. */
            memset(w + lo, 0, (hi - lo) * sizeof(float));
            count = (size_t)c->vocab_size * (size_t)c->channels;
            std = INIT_STD;
            break;
        case BL_GPT2_WPE:
        case BL_GPT2_QKVW:
        case BL_GPT2_FCW:
            std = INIT_STD;
            break;
        case BL_GPT2_ATTPROJW:
        case BL_GPT2_FCPROJW:
            std = proj_std;
            break;
        default:
            break;
        }
        const int ln_weight = id == BL_GPT2_LN1W || id == BL_GPT2_LN2W || id == BL_GPT2_LNFW;
        bl_rng_t r;
        bl_rng_init(&r, bl_seed_mix(base, (uint64_t)id));
        /* The stream is drawn from its start, so a stage's part is the
         * same draws as one process's. */
        const size_t end = hi < count ? hi : count;
        for (size_t i = 0; i < end; i++) {
            const float v = std > 0.0 ? normal(&r, std) : ln_weight ? 1.0f : 0.0f;
            if (i >= lo) {
                w[i] = v;
            }
        }
    }
    bl_status_t s = BL_OK;
    if (g->memory != NULL) {
        s = bl_gpt2_upload_gpt(g, host, err);
        bl_mem_free(&g->alloc, host);
    }
    return s == BL_OK ? bl_gpt2_init_layers(g, seed, err) : s;
}

bl_status_t bl_gpt2_upload(bl_gpt2_t *g, const float *params, bl_error_t *err)
{
    if (g == NULL || params == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_upload: %s is NULL",
                            g == NULL ? "g" : "params");
    }
    if (bl_gpt2_dev_put(g, g->params, params, g->param_count * sizeof(float)) != 0) {
        return copy_failed(g, "uploading the parameters", err);
    }
    return BL_OK;
}

bl_status_t bl_gpt2_download(const bl_gpt2_t *g, const float *src, float *dst, bl_error_t *err)
{
    if (g == NULL || src == NULL || dst == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_download: %s is NULL",
                            g == NULL     ? "g"
                            : src == NULL ? "src"
                                          : "dst");
    }
    const size_t nbytes = g->param_count * sizeof(float);
    if (g->memory == NULL) {
        memcpy(dst, src, nbytes);
    } else if (g->memory->to_host(dst, src, nbytes) != 0) {
        return copy_failed(g, "downloading a parameter array", err);
    }
    return BL_OK;
}

bl_status_t bl_gpt2_put(const bl_gpt2_t *g, float *dst, const float *src, size_t count,
                        bl_error_t *err)
{
    if (bl_gpt2_dev_put(g, dst, src, count * sizeof(float)) != 0) {
        return copy_failed(g, "uploading a parameter range", err);
    }
    return BL_OK;
}

bl_status_t bl_gpt2_get(const bl_gpt2_t *g, const float *src, float *dst, size_t count,
                        bl_error_t *err)
{
    const size_t nbytes = count * sizeof(float);
    if (g->memory == NULL) {
        memcpy(dst, src, nbytes);
    } else if (g->memory->to_host(dst, src, nbytes) != 0) {
        return copy_failed(g, "downloading a parameter range", err);
    }
    return BL_OK;
}

bl_status_t bl_gpt2_put_batch(const bl_gpt2_t *g, bl_gpt2_acts_t *acts, const int32_t *tokens,
                              const int32_t *targets, int B, bl_error_t *err)
{
    const size_t nbytes = (size_t)B * (size_t)acts->T * sizeof(int32_t);
    if (B > 0 && (bl_gpt2_dev_put(g, acts->tokens, tokens, nbytes) != 0 ||
                  bl_gpt2_dev_put(g, acts->targets, targets, nbytes) != 0)) {
        return copy_failed(g, "uploading the batch's tokens", err);
    }
    return BL_OK;
}

bl_status_t bl_gpt2_zero_grads(bl_gpt2_t *g, bl_error_t *err)
{
    if (g == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_zero_grads: g is NULL");
    }
    const size_t nbytes = g->param_count * sizeof(float);
    if (g->spanned) {
        bl_gpt2_range_t held[BL_GPT2_MAX_RANGES];
        const int n = g->held_first < g->held_last
                          ? bl_gpt2_unit_ranges(g, g->held_first, g->held_last, held)
                          : 0;
        for (int r = 0; r < n; r++) {
            memset(g->grads + held[r].offset, 0, held[r].count * sizeof(float));
        }
    } else if (g->memory == NULL) {
        memset(g->grads, 0, nbytes);
    } else if (g->memory->zero(g->grads, nbytes) != 0) {
        return copy_failed(g, "zeroing the gradients", err);
    }
    return BL_OK;
}

/* Checks that each of the count ids (B, T) lies in [0, V), naming the first
 * one that does not as what[b, t]. */
static bl_status_t check_ids(const bl_gpt2_t *g, const bl_gpt2_acts_t *acts, const int32_t *ids,
                             const char *what, bl_error_t *err)
{
    const int V = g->config.vocab_size;
    const size_t n = (size_t)acts->B * (size_t)acts->T;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= V) {
            return bl_error_set(err, BL_ERR_INVALID_ARG,
                                "GPT-2 forward: %s[%zu, %zu] = %d is outside the vocabulary "
                                "[0, vocab_size V = %d)",
                                what, i / (size_t)acts->T, i % (size_t)acts->T, (int)ids[i], V);
        }
    }
    return BL_OK;
}

bl_status_t bl_gpt2_forward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, const int32_t *tokens,
                            const int32_t *targets, double *loss, bl_error_t *err)
{
    if (loss != NULL) {
        *loss = 0.0;
    }
    if (g == NULL || acts == NULL || acts->layers == NULL || tokens == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_forward: %s is NULL",
                            g == NULL        ? "g"
                            : tokens == NULL ? "tokens"
                                             : "acts");
    }
    bl_status_t s = check_ids(g, acts, tokens, "tokens", err);
    if (s == BL_OK && targets != NULL) {
        s = check_ids(g, acts, targets, "targets", err);
    }
    if (s != BL_OK) {
        return s;
    }
    const size_t nbytes = (size_t)acts->B * (size_t)acts->T * sizeof(int32_t);
    acts->has_targets = 0;
    if (bl_gpt2_dev_put(g, acts->tokens, tokens, nbytes) != 0 ||
        (targets != NULL && bl_gpt2_dev_put(g, acts->targets, targets, nbytes) != 0)) {
        return copy_failed(g, "uploading the tokens", err);
    }
    acts->has_targets = targets != NULL;
    double sum = 0.0;
    for (int u = 0; u <= g->config.num_layers + 1 && s == BL_OK; u++) {
        s = bl_gpt2_unit_forward(g, acts, u, &sum, err);
    }
    if (loss != NULL) {
        *loss = sum;
    }
    return s;
}

bl_status_t bl_gpt2_backward(bl_gpt2_t *g, bl_gpt2_acts_t *acts, bl_error_t *err)
{
    if (g == NULL || acts == NULL || acts->layers == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_backward: %s is NULL",
                            g == NULL ? "g" : "acts");
    }
    if (!acts->has_targets) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "GPT-2 backward: the last forward had no targets");
    }
    bl_status_t s = BL_OK;
    for (int u = g->config.num_layers + 1; u >= 0 && s == BL_OK; u--) {
        s = bl_gpt2_unit_backward(g, acts, u, err);
    }
    return s;
}
