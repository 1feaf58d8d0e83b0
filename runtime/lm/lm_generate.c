/* Text generation from an llm.c GPT-2 checkpoint (bl_lm_generate,
 * ballast.h). The contract: out[0 .. prompt_count) is the prompt, and each
 * later token out[n] is drawn from softmax(logits / temperature) over the V
 * real tokens, where the logits are the model's prediction after the last
 * min(n, max_seq_len) tokens out[.. n). The draws come from the runtime's
 * generator seeded by bl_seed_mix(seed, BL_SEED_DOMAIN_SAMPLE), one 53-bit
 * uniform per token, so one seed always gives the same text.
 *
 * The model runs on the runtime's device (the CPU, or in the memory of a
 * device with memory of its own, whose logits row is downloaded before it
 * is read), one sequence (B = 1) of T positions, T = min(max_seq_len, the
 * longest context needed). The
 * forward always runs all T positions: a shorter context of len tokens
 * sits at positions 0 .. len − 1 and token 0 pads the rest, which causal
 * attention keeps from reaching position len − 1, whose logits are read. */
#include <math.h>
#include <string.h>

#include "gpt2.h"
#include "gpt2_file.h"
#include "runtime_impl.h"

/* Draws a token from softmax(logits[0 .. V) / temperature), computed in
 * double with the maximum subtracted; prob (V doubles) is scratch. Returns
 * the token, or -1 when the logits give no distribution (a NaN or an
 * infinity among them). */
static int sample_token(const float *logits, int V, double temperature, double *prob, bl_rng_t *r)
{
    float max = logits[0];
    for (int v = 1; v < V; v++) {
        if (logits[v] > max) {
            max = logits[v];
        }
    }
    double sum = 0.0;
    for (int v = 0; v < V; v++) {
        prob[v] = exp(((double)logits[v] - (double)max) / temperature);
        sum += prob[v];
    }
    /* The maximum's own term is exp(0) = 1, so sum >= 1 unless a NaN crept
     * in (a NaN logit, or an infinite maximum: inf − inf). */
    if (!(sum >= 1.0) || !isfinite(sum)) {
        return -1;
    }
    const double u = (double)(bl_rng_next(r) >> 11) * 0x1p-53 * sum; /* [0, sum) */
    double acc = 0.0;
    int last = 0;
    for (int v = 0; v < V; v++) {
        if (prob[v] > 0.0) {
            acc += prob[v];
            last = v;
            if (u < acc) {
                return v;
            }
        }
    }
    return last; /* u within rounding of the top: the last token that can occur */
}

bl_status_t bl_lm_generate(bl_runtime_t *rt, const char *model_path, const uint16_t *prompt,
                           int prompt_count, int new_tokens, float temperature, uint64_t seed,
                           uint16_t *out)
{
    if (rt == NULL) {
        return BL_ERR_INVALID_ARG; /* no runtime to hold a message */
    }
    if (model_path == NULL || prompt == NULL || out == NULL) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "bl_lm_generate: %s is NULL",
                       model_path == NULL ? "model_path"
                       : prompt == NULL   ? "prompt"
                                          : "out");
    }
    if (prompt_count < 1) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "bl_lm_generate: prompt_count %d must be at least 1",
                       prompt_count);
    }
    if (new_tokens < 0) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "bl_lm_generate: new_tokens %d must not be negative",
                       new_tokens);
    }
    if (!(temperature > 0.0f) || !isfinite(temperature)) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "bl_lm_generate: temperature %g must be finite and above 0",
                       (double)temperature);
    }

    const bl_allocator_t *a = bl_rt_allocator(rt);
    bl_error_t err = {0};
    bl_gpt2_file_t file = {0};
    bl_gpt2_t *g = NULL;
    bl_gpt2_acts_t acts = {0};
    int32_t *ctx = NULL; /* (T) the forward's tokens */
    double *prob = NULL; /* (V) the sampler's scratch */
    float *row = NULL;   /* (V) the logits read, downloaded from a device */
    bl_status_t st = bl_gpt2_load(model_path, a, &err, &file);
    if (st != BL_OK) {
        return bl_fail_from(rt, &err);
    }
    const bl_gpt2_config_t cfg = file.config;
    const int V = cfg.vocab_size, Vp = cfg.padded_vocab_size;
    if (V > 65536) {
        st = bl_fail(rt, BL_ERR_FORMAT,
                     "%s: vocab_size %d does not fit 16-bit tokens (at most 65536)", model_path, V);
        goto done;
    }
    for (int i = 0; i < prompt_count; i++) {
        if (prompt[i] >= V) {
            st = bl_fail(rt, BL_ERR_INVALID_ARG,
                         "bl_lm_generate: prompt token %u at position %d is outside the "
                         "vocabulary [0, %d) of %s",
                         (unsigned)prompt[i], i, V, model_path);
            goto done;
        }
    }
    memmove(out, prompt, (size_t)prompt_count * sizeof *out);
    const long total = (long)prompt_count + new_tokens;
    if (new_tokens == 0) {
        goto done; /* st is BL_OK: nothing to draw */
    }

    /* The last draw reads total − 1 tokens, so T never needs more. */
    const int T = total - 1 < cfg.max_seq_len ? (int)(total - 1) : cfg.max_seq_len;
    const bl_device_t *dev = &rt->device;
    st = bl_gpt2_create(&cfg, dev->kernels, dev->memory, a, &err, &g);
    if (st == BL_OK) {
        st = bl_gpt2_upload(g, file.params, &err);
    }
    bl_gpt2_free(&file, a); /* the model holds its own copy now */
    if (st == BL_OK) {
        st = bl_gpt2_acts_init(g, 1, T, &acts, &err);
    }
    if (st != BL_OK) {
        st = dev->memory != NULL
                 ? bl_fail(rt, err.status, "rank %d (%s): %s", rt->rank, dev->name, err.msg)
                 : bl_fail_from(rt, &err);
        goto done;
    }
    ctx = bl_mem_array_zeroed(a, (size_t)T, sizeof *ctx);
    prob = bl_mem_array(a, (size_t)V, sizeof *prob);
    if (dev->memory != NULL) {
        row = bl_mem_array(a, (size_t)V, sizeof *row);
    }
    if (ctx == NULL || prob == NULL || (dev->memory != NULL && row == NULL)) {
        st = bl_fail(rt, BL_ERR_NO_MEM,
                     "bl_lm_generate: out of memory for the sampler's %d probabilities", V);
        goto done;
    }

    bl_rng_t r;
    bl_rng_init(&r, bl_seed_mix(seed, BL_SEED_DOMAIN_SAMPLE));
    for (long n = prompt_count; n < total; n++) {
        /* The context out[n − len .. n) at positions 0 .. len − 1, token 0
         * after it; logits (1, T, Vp), row len − 1 predicts out[n]. */
        const int len = n < T ? (int)n : T;
        for (int t = 0; t < T; t++) {
            ctx[t] = t < len ? (int32_t)out[n - len + t] : 0;
        }
        st = bl_gpt2_forward(g, &acts, ctx, NULL, NULL, &err);
        if (st != BL_OK) {
            st = bl_fail_from(rt, &err);
            goto done;
        }
        const float *logits = acts.logits + (size_t)(len - 1) * (size_t)Vp;
        if (row != NULL) {
            if (bl_gpt2_get(g, logits, row, (size_t)V, &err) != BL_OK) {
                st = bl_fail(rt, err.status, "rank %d (%s): %s", rt->rank, dev->name, err.msg);
                goto done;
            }
            logits = row;
        }
        const int token = sample_token(logits, V, (double)temperature, prob, &r);
        if (token < 0) {
            st = bl_fail(rt, BL_ERR_FORMAT,
                         "%s: the logits for token %ld are not finite (NaN or infinite "
                         "parameters in the model?)",
                         model_path, n);
            goto done;
        }
        out[n] = (uint16_t)token;
    }

done:
    bl_mem_free(a, row);
    bl_mem_free(a, prob);
    bl_mem_free(a, ctx);
    if (g != NULL) {
        bl_gpt2_acts_free(g, &acts);
    }
    bl_gpt2_destroy(g);
    bl_gpt2_free(&file, a);
    return st;
}
