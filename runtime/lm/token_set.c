/* Token sets (ballast.h): the public face of tokens.h's files and
 * byte-level tokenizer. */
#include <string.h>

#include "lm_impl.h"
#include "tokens.h"

struct bl_token_set {
    bl_runtime_t *rt;
    bl_tokens_t tokens;
};

/* Wraps the tokens that load() reads into a new set. */
static bl_status_t open_set(bl_runtime_t *rt, const char *path, int vocab, int text,
                            bl_token_set_t **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (rt == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (out == NULL || path == NULL) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "token set: NULL %s", out == NULL ? "out" : "path");
    }
    const bl_allocator_t *a = bl_rt_allocator(rt);
    bl_token_set_t *s = bl_mem_alloc(a, sizeof *s);
    if (s == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for a token set");
    }
    memset(s, 0, sizeof *s);
    s->rt = rt;
    bl_error_t err = {0};
    bl_status_t st = text ? bl_tokens_from_bytes(path, a, &err, &s->tokens)
                          : bl_tokens_load(path, vocab, a, &err, &s->tokens);
    if (st != BL_OK) {
        bl_mem_free(a, s);
        return bl_fail_from(rt, &err);
    }
    *out = s;
    return BL_OK;
}

bl_status_t bl_tokens_open(bl_runtime_t *rt, const char *path, int vocab, bl_token_set_t **out)
{
    return open_set(rt, path, vocab, 0, out);
}

bl_status_t bl_tokens_open_text(bl_runtime_t *rt, const char *path, bl_token_set_t **out)
{
    return open_set(rt, path, 0, 1, out);
}

bl_status_t bl_tokens_save(bl_runtime_t *rt, const char *path, const uint16_t *tokens, long count)
{
    if (rt == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    bl_error_t err = {0};
    return bl_tokens_write(path, tokens, count, &err) == BL_OK ? BL_OK : bl_fail_from(rt, &err);
}

void bl_token_set_destroy(bl_token_set_t *s)
{
    if (s != NULL) {
        const bl_allocator_t *a = bl_rt_allocator(s->rt);
        bl_tokens_free(&s->tokens, a);
        bl_mem_free(a, s);
    }
}

long bl_token_set_count(const bl_token_set_t *s)
{
    return s != NULL ? s->tokens.count : 0;
}

const uint16_t *bl_token_set_data(const bl_token_set_t *s)
{
    return s != NULL ? s->tokens.tokens : NULL;
}

int bl_token_set_vocab(const bl_token_set_t *s)
{
    return s != NULL ? s->tokens.vocab : 0;
}
