/* llm.c token files and the byte-level tokenizer (tokens.h).
 *
 * The header is not trusted for memory: a 1024-byte file can declare 2^31
 * tokens. The token buffer starts at the length the file really has (or
 * 64 KiB when that is unknown, as for a pipe), capped at the declared size,
 * and doubles only when it is full and the file still has bytes, so a
 * truncated or lying file fails after reading what it really holds. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsync_dir.h"
#include "tokens.h"

#define TOKENS_HEADER_NBYTES  (4 * BL_TOKENS_HEADER_WORDS)
#define TOKENS_FIRST_CHUNK    (64u * 1024u)   /* the first buffer, at least */
#define TOKENS_TRAILING_LIMIT (1024u * 1024u) /* trailing bytes counted before giving up */
#define TOKENS_WRITE_CHUNK    8192            /* the tokens converted per fwrite */

/* Reads up to want (> 0) bytes of f, which stands skip bytes into the file,
 * into a new buffer from a (*out), and sets *have to the count read (below
 * want only at the end of the file) and *trailing to the bytes after want,
 * counted up to a limit. The buffer starts at the bytes the regular file
 * holds past skip, plus one so that finding the end does not double it (or
 * at 64 KiB), capped at want, and doubles, capped at want, while it is full
 * and more is wanted. On failure *out is NULL and err says why. */
static bl_status_t read_body(FILE *f, const char *path, size_t skip, size_t want,
                             const bl_allocator_t *a, bl_error_t *err, unsigned char **out,
                             size_t *have, size_t *trailing)
{
    struct stat sb;
    size_t cap = TOKENS_FIRST_CHUNK;
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) &&
        (unsigned long long)sb.st_size >= skip + cap) {
        unsigned long long rest = (unsigned long long)sb.st_size - skip;
        cap = rest < want ? (size_t)rest + 1 : want;
    }
    cap = cap < want ? cap : want;
    unsigned char *buf = bl_mem_alloc(a, cap);
    size_t n = 0;
    *out = NULL;
    *trailing = 0;
    for (;;) {
        if (buf == NULL) {
            return bl_error_set(err, BL_ERR_NO_MEM, "%s: cannot allocate %zu bytes for the tokens",
                                path, cap);
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n == want || n < cap) {
            break;
        }
        /* The buffer is full and more is wanted: the bytes read so far
         * justify doubling it. */
        cap = cap <= want / 2 ? cap * 2 : want;
        unsigned char *bigger = bl_mem_alloc(a, cap);
        if (bigger != NULL) {
            memcpy(bigger, buf, n);
        }
        bl_mem_free(a, buf);
        buf = bigger;
    }
    while (n == want && !ferror(f) && *trailing < TOKENS_TRAILING_LIMIT) {
        unsigned char scratch[4096];
        size_t got = fread(scratch, 1, sizeof scratch, f);
        *trailing += got;
        if (got < sizeof scratch) {
            break;
        }
    }
    if (ferror(f)) {
        bl_mem_free(a, buf);
        return bl_error_set(err, BL_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    }
    *out = buf;
    *have = n;
    return BL_OK;
}

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
    unsigned char *buf = NULL;
    long count = 0;
    size_t have = 0;

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
    size_t trailing = 0;
    s = read_body(f, path, TOKENS_HEADER_NBYTES, want, a, err, &buf, &have, &trailing);
    if (s != BL_OK) {
        goto fail;
    }
    if (have < want) {
        s = bl_error_set(err, BL_ERR_FORMAT,
                         "%s: header declares %ld tokens (%zu bytes) but the file holds only %zu "
                         "bytes of tokens",
                         path, count, want, have);
        goto fail;
    }
    if (trailing > 0) {
        s = bl_error_set(err, BL_ERR_FORMAT, "%s: %s%zu byte%s after the %ld declared tokens", path,
                         trailing >= TOKENS_TRAILING_LIMIT ? "at least " : "", trailing,
                         trailing == 1 ? "" : "s", count);
        goto fail;
    }

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
    bl_mem_free(a, buf);
    fclose(f);
    return s;
}

/* Writes the file through a unique temporary name beside path (mkstemp, so
 * concurrent writers never share one), flushed and synced before the rename
 * so that path never names a partial file, then syncs the directory. */
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
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "%s: path too long", path);
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        return bl_error_set(err, BL_ERR_IO, "%s: cannot create the temporary file %s: %s", path,
                            tmp, strerror(errno));
    }
    fchmod(fd, 0644); /* mkstemp's 0600 would hide the file from the group */
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        int saved = errno;
        close(fd);
        remove(tmp);
        return bl_error_set(err, BL_ERR_IO, "%s: cannot open %s: %s", path, tmp, strerror(saved));
    }

    unsigned char header[TOKENS_HEADER_NBYTES] = {0};
    bl_le_put32(header, BL_TOKENS_MAGIC);
    bl_le_put32(header + 4, BL_TOKENS_VERSION);
    bl_le_put32(header + 8, (uint32_t)count);
    int ok = fwrite(header, 1, sizeof header, f) == sizeof header;
    unsigned char chunk[2 * TOKENS_WRITE_CHUNK];
    for (long i = 0; ok && i < count; i += TOKENS_WRITE_CHUNK) {
        size_t n = count - i < TOKENS_WRITE_CHUNK ? (size_t)(count - i) : TOKENS_WRITE_CHUNK;
        for (size_t j = 0; j < n; j++) {
            chunk[2 * j] = (unsigned char)(tokens[i + (long)j] & 0xff);
            chunk[2 * j + 1] = (unsigned char)(tokens[i + (long)j] >> 8);
        }
        ok = fwrite(chunk, 2, n, f) == n;
    }
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        remove(tmp);
        return bl_error_set(err, BL_ERR_IO, "%s: writing %ld tokens to %s failed: %s", path, count,
                            tmp, strerror(saved));
    }
    if (rename(tmp, path) != 0) {
        saved = errno;
        remove(tmp);
        return bl_error_set(err, BL_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp,
                            strerror(saved));
    }
    char *slash = strrchr(tmp, '/');
    if (slash != NULL) {
        slash[slash == tmp ? 1 : 0] = '\0'; /* tmp becomes the directory */
    }
    if (bl_fsync_dir(slash == NULL ? "." : tmp) != 0) {
        return bl_error_set(err, BL_ERR_IO, "%s: written, but syncing its directory failed: %s",
                            path, strerror(errno));
    }
    return BL_OK;
}

bl_status_t bl_tokens_from_bytes(const char *path, const bl_allocator_t *a, bl_error_t *err,
                                 bl_tokens_t *out)
{
    bl_status_t s = BL_OK;
    unsigned char *bytes = NULL;
    size_t n = 0;

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
    size_t trailing = 0;
    s = read_body(f, path, 0, (size_t)INT32_MAX + 1, a, err, &bytes, &n, &trailing);
    fclose(f);
    if (s != BL_OK) {
        return s;
    }
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
