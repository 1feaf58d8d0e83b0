/* llm.c token files and the byte-level tokenizer (tokens.h).
 *
 * The header is not trusted for memory: a 1024-byte file can declare 2^31
 * tokens. The tokens are read by bl_file_read_rest (file_io.h), whose
 * buffer grows with the bytes that really arrive, so a truncated or lying
 * file fails after reading what it really holds. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "file_io.h"
#include "tokens.h"

#define TOKENS_HEADER_NBYTES (4 * BL_TOKENS_HEADER_WORDS)
#define TOKENS_WRITE_CHUNK   8192 /* the tokens converted per fwrite */

/* Reads and checks the header of f: the magic, the version and the token
 * count, which it stores in *count. */
static bl_status_t read_header(FILE *f, const char *path, long *count, bl_error_t *err)
{
    unsigned char header[TOKENS_HEADER_NBYTES];
    size_t got = fread(header, 1, sizeof header, f);
    if (got < sizeof header) {
        if (ferror(f)) {
            return bl_error_set(err, BL_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
        }
        if (got == 0) {
            return bl_error_set(err, BL_ERR_FORMAT,
                                "%s: file is empty, expected a %d-byte token file header", path,
                                TOKENS_HEADER_NBYTES);
        }
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: header is %zu bytes, shorter than the %d-byte token file header",
                            path, got, TOKENS_HEADER_NBYTES);
    }
    long magic = (int32_t)bl_le_get32(header);
    long version = (int32_t)bl_le_get32(header + 4);
    *count = (int32_t)bl_le_get32(header + 8);
    if (magic != BL_TOKENS_MAGIC) {
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: magic %ld is not an llm.c token file's (expected %d)", path, magic,
                            BL_TOKENS_MAGIC);
    }
    if (version != BL_TOKENS_VERSION) {
        return bl_error_set(err, BL_ERR_FORMAT, "%s: version %ld is not supported (expected %d)",
                            path, version, BL_TOKENS_VERSION);
    }
    if (*count <= 0) {
        return bl_error_set(err, BL_ERR_FORMAT, "%s: token count %ld is not positive", path,
                            *count);
    }
#if SIZE_MAX / 2 < INT32_MAX
    if ((unsigned long)*count > SIZE_MAX / 2) {
        return bl_error_set(err, BL_ERR_FORMAT, "%s: token count %ld overflows SIZE_MAX bytes",
                            path, *count);
    }
#endif
    return BL_OK;
}

bl_status_t bl_tokens_load(const char *path, int vocab, const bl_allocator_t *a, bl_error_t *err,
                           bl_tokens_t *out)
{
    bl_status_t s = BL_OK;
    FILE *f = NULL;
    bl_file_body_t body = {0};
    long count = 0;

    if (out == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_tokens_load: out is NULL");
    }
    memset(out, 0, sizeof *out);
    if (path == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_tokens_load: path is NULL");
    }
    if (vocab < 0) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "%s: vocab %d is negative (0: the largest token + 1)", path, vocab);
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        return bl_error_set(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    s = read_header(f, path, &count, err);
    if (s != BL_OK) {
        goto fail;
    }
    size_t want = (size_t)count * 2;
    s = bl_file_read_rest(f, path, want, "the tokens", a, err, &body);
    if (s != BL_OK) {
        goto fail;
    }
    if (body.nbytes < want) {
        s = bl_error_set(err, BL_ERR_FORMAT,
                         "%s: header declares %ld tokens (%zu bytes) but the file holds only %zu "
                         "bytes of tokens",
                         path, count, want, body.nbytes);
        goto fail;
    }
    if (body.trailing > 0) {
        s = bl_error_set(err, BL_ERR_FORMAT, "%s: %s%zu byte%s after the %ld declared tokens", path,
                         body.trailing >= BL_FILE_TRAILING_LIMIT ? "at least " : "", body.trailing,
                         body.trailing == 1 ? "" : "s", count);
        goto fail;
    }
    unsigned char *buf = body.bytes;

    /* The file is little-endian; this is the identity on little-endian
     * hosts, and each token is read before its two bytes are overwritten. */
    uint16_t *tokens = (uint16_t *)(void *)buf;
    int max_token = 0;
    for (long i = 0; i < count; i++) {
        tokens[i] = (uint16_t)(buf[2 * i] | buf[2 * i + 1] << 8);
        if (vocab > 0 && tokens[i] >= vocab) {
            s = bl_error_set(err, BL_ERR_FORMAT,
                             "%s: token %d at position %ld is not below the vocab %d", path,
                             tokens[i], i, vocab);
            goto fail;
        }
        if (tokens[i] > max_token) {
            max_token = tokens[i];
        }
    }
    fclose(f);
    out->count = count;
    out->tokens = tokens;
    out->vocab = vocab > 0 ? vocab : max_token + 1;
    return BL_OK;

fail:
    bl_mem_free(a, body.bytes);
    fclose(f);
    return s;
}

/* The tokens to write (bl_file_write_fn). */
typedef struct token_data {
    const uint16_t *tokens;
    long count;
} token_data_t;

/* Writes the header and the tokens, little-endian, to f. */
static int write_tokens(FILE *f, const void *ctx)
{
    const token_data_t *t = ctx;
    unsigned char header[TOKENS_HEADER_NBYTES] = {0};
    bl_le_put32(header, BL_TOKENS_MAGIC);
    bl_le_put32(header + 4, BL_TOKENS_VERSION);
    bl_le_put32(header + 8, (uint32_t)t->count);
    int ok = fwrite(header, 1, sizeof header, f) == sizeof header;
    unsigned char chunk[2 * TOKENS_WRITE_CHUNK];
    for (long i = 0; ok && i < t->count; i += TOKENS_WRITE_CHUNK) {
        size_t n = t->count - i < TOKENS_WRITE_CHUNK ? (size_t)(t->count - i) : TOKENS_WRITE_CHUNK;
        for (size_t j = 0; j < n; j++) {
            chunk[2 * j] = (unsigned char)(t->tokens[i + (long)j] & 0xff);
            chunk[2 * j + 1] = (unsigned char)(t->tokens[i + (long)j] >> 8);
        }
        ok = fwrite(chunk, 2, n, f) == n;
    }
    return ok;
}

/* The file replaces path whole (bl_file_replace), so that path never names
 * a partial file. */
bl_status_t bl_tokens_write(const char *path, const uint16_t *tokens, long count, bl_error_t *err)
{
    if (path == NULL || tokens == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_tokens_write: %s is NULL",
                            path == NULL ? "path" : "tokens");
    }
    if (count <= 0 || count > INT32_MAX) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "%s: token count %ld is outside 1 .. INT32_MAX", path, count);
    }
    char contents[32];
    snprintf(contents, sizeof contents, "%ld tokens", count);
    const token_data_t data = {tokens, count};
    return bl_file_replace(path, &(bl_file_words_t){.contents = contents}, write_tokens, &data,
                           err);
}

bl_status_t bl_tokens_from_bytes(const char *path, const bl_allocator_t *a, bl_error_t *err,
                                 bl_tokens_t *out)
{
    if (out == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_tokens_from_bytes: out is NULL");
    }
    memset(out, 0, sizeof *out);
    if (path == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_tokens_from_bytes: path is NULL");
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return bl_error_set(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    /* One byte past the most a token file holds tells a file that is too
     * long from one that just fits. */
    bl_file_body_t body;
    bl_status_t s = bl_file_read_rest(f, path, (size_t)INT32_MAX + 1, "the tokens", a, err, &body);
    fclose(f);
    if (s != BL_OK) {
        return s;
    }
    unsigned char *bytes = body.bytes;
    size_t n = body.nbytes;
    if (n == 0 || n > INT32_MAX) {
        bl_mem_free(a, bytes);
        return bl_error_set(err, BL_ERR_FORMAT,
                            n == 0 ? "%s: file is empty, there are no bytes to tokenize"
                                   : "%s: file holds more than INT32_MAX bytes, more tokens than "
                                     "a token file holds",
                            path);
    }
    uint16_t *tokens = bl_mem_array(a, n, sizeof *tokens);
    if (tokens == NULL) {
        bl_mem_free(a, bytes);
        return bl_error_set(err, BL_ERR_NO_MEM, "%s: cannot allocate %zu tokens", path, n);
    }
    for (size_t i = 0; i < n; i++) {
        tokens[i] = bytes[i];
    }
    bl_mem_free(a, bytes);
    out->count = (long)n;
    out->tokens = tokens;
    out->vocab = BL_TOKENS_BYTE_VOCAB;
    return BL_OK;
}

void bl_tokens_free(bl_tokens_t *t, const bl_allocator_t *a)
{
    if (t == NULL) {
        return;
    }
    bl_mem_free(a, t->tokens);
    memset(t, 0, sizeof *t);
}
