/* llm.c's GPT-2 float32 checkpoints (gpt2_file.h).
 *
 * The header is not trusted for memory: a 1024-byte file can declare
 * gigabytes of parameters. The parameters are read by bl_file_read_rest
 * (file_io.h), whose buffer grows with the bytes that really arrive. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "file_io.h"
#include "gpt2_file.h"

#define GPT2_HEADER_NBYTES (4 * BL_GPT2_HEADER_WORDS)
#define GPT2_WRITE_CHUNK   4096 /* the floats converted per fwrite */
#define GPT2_BF16_VERSION  5

/* Each tensor's count is rows · mult · C, times C again when square, where
 * rows is Vp, maxT, L or 1. The order is the file's. */
enum { ROWS_VP, ROWS_MAXT, ROWS_L, ROWS_ONE };
static const struct {
    const char *name;
    const char *shape;
    int rows, mult, square;
} LAYOUT[BL_GPT2_TENSOR_COUNT] = {
    {"wte", "Vp·C", ROWS_VP, 1, 0},      {"wpe", "maxT·C", ROWS_MAXT, 1, 0},
    {"ln1w", "L·C", ROWS_L, 1, 0},       {"ln1b", "L·C", ROWS_L, 1, 0},
    {"qkvw", "L·3C·C", ROWS_L, 3, 1},    {"qkvb", "L·3C", ROWS_L, 3, 0},
    {"attprojw", "L·C·C", ROWS_L, 1, 1}, {"attprojb", "L·C", ROWS_L, 1, 0},
    {"ln2w", "L·C", ROWS_L, 1, 0},       {"ln2b", "L·C", ROWS_L, 1, 0},
    {"fcw", "L·4C·C", ROWS_L, 4, 1},     {"fcb", "L·4C", ROWS_L, 4, 0},
    {"fcprojw", "L·C·4C", ROWS_L, 4, 1}, {"fcprojb", "L·C", ROWS_L, 1, 0},
    {"lnfw", "C", ROWS_ONE, 1, 0},       {"lnfb", "C", ROWS_ONE, 1, 0},
};

/* Sets *v to *v · b and returns 1, or returns 0 when that overflows. */
static int mul_checked(uint64_t *v, uint64_t b)
{
    if (b != 0 && *v > UINT64_MAX / b) {
        return 0;
    }
    *v *= b;
    return 1;
}

/* The checks and the table of bl_gpt2_tensors, with name (the file, or
 * "GPT-2 config") opening each message. */
static bl_status_t layout(const bl_gpt2_config_t *c, const char *name, bl_gpt2_tensor_t *tensors,
                          size_t *param_count, bl_error_t *err)
{
    const struct {
        const char *field;
        int value;
    } fields[6] = {
        {"max_seq_len maxT", c->max_seq_len}, {"vocab_size V", c->vocab_size},
        {"num_layers L", c->num_layers},      {"num_heads NH", c->num_heads},
        {"channels C", c->channels},          {"padded_vocab_size Vp", c->padded_vocab_size}};
    for (int i = 0; i < 6; i++) {
        if (fields[i].value <= 0) {
            return bl_error_set(err, BL_ERR_FORMAT, "%s: %s = %d is not positive", name,
                                fields[i].field, fields[i].value);
        }
    }
    if (c->channels % c->num_heads != 0) {
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: num_heads NH = %d does not divide channels C = %d", name,
                            c->num_heads, c->channels);
    }
    if (c->padded_vocab_size < c->vocab_size) {
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: padded_vocab_size Vp = %d is below vocab_size V = %d", name,
                            c->padded_vocab_size, c->vocab_size);
    }
    /* The file's bytes, 1024 + 4 · total, must fit a size_t (one buffer)
     * and an off_t. */
    uint64_t limit = (SIZE_MAX < INT64_MAX ? (uint64_t)SIZE_MAX : (uint64_t)INT64_MAX);
    limit = (limit - GPT2_HEADER_NBYTES) / sizeof(float);
    const int rows[4] = {c->padded_vocab_size, c->max_seq_len, c->num_layers, 1};
    uint64_t total = 0;
    for (int i = 0; i < BL_GPT2_TENSOR_COUNT; i++) {
        uint64_t n = (uint64_t)rows[LAYOUT[i].rows];
        int ok = mul_checked(&n, (uint64_t)LAYOUT[i].mult) && mul_checked(&n, c->channels) &&
                 (!LAYOUT[i].square || mul_checked(&n, c->channels)) && n <= limit - total;
        if (!ok) {
            return bl_error_set(err, BL_ERR_FORMAT,
                                "%s: the sizes overflow at tensor %s (%s with Vp = %d, maxT = %d, "
                                "L = %d, C = %d): the parameters exceed %llu floats",
                                name, LAYOUT[i].name, LAYOUT[i].shape, c->padded_vocab_size,
                                c->max_seq_len, c->num_layers, c->channels,
                                (unsigned long long)limit);
        }
        if (tensors != NULL) {
            tensors[i].name = LAYOUT[i].name;
            tensors[i].offset = (size_t)total;
            tensors[i].count = (size_t)n;
            tensors[i].layers = LAYOUT[i].rows == ROWS_L ? c->num_layers : 1;
        }
        total += n;
    }
    if (param_count != NULL) {
        *param_count = (size_t)total;
    }
    return BL_OK;
}

bl_status_t bl_gpt2_tensors(const bl_gpt2_config_t *cfg, bl_gpt2_tensor_t *tensors,
                            size_t *param_count, bl_error_t *err)
{
    if (cfg == NULL || tensors == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_tensors: %s is NULL",
                            cfg == NULL ? "cfg" : "tensors");
    }
    return layout(cfg, "GPT-2 config", tensors, param_count, err);
}

/* Reads the want parameter bytes of f into a new buffer from a (*out)
 * and checks that nothing follows them. On failure *out is NULL and err
 * says why. */
static bl_status_t read_params(FILE *f, const char *path, size_t want, const bl_allocator_t *a,
                               bl_error_t *err, unsigned char **out)
{
    bl_file_body_t body;
    *out = NULL;
    bl_status_t s = bl_file_read_rest(f, path, want, "the parameters", a, err, &body);
    if (s != BL_OK) {
        return s;
    }
    if (body.nbytes < want) {
        s = bl_error_set(err, BL_ERR_FORMAT,
                         "%s: header declares %zu parameters (%zu bytes) but the file holds only "
                         "%zu bytes of parameters",
                         path, want / sizeof(float), want, body.nbytes);
    } else if (body.trailing > 0) {
        s = bl_error_set(err, BL_ERR_FORMAT, "%s: %s%zu byte%s after the declared parameters", path,
                         body.trailing >= BL_FILE_TRAILING_LIMIT ? "at least " : "", body.trailing,
                         body.trailing == 1 ? "" : "s");
    }
    if (s != BL_OK) {
        bl_mem_free(a, body.bytes);
        return s;
    }
    *out = body.bytes;
    return BL_OK;
}

/* Reads the header of f into *cfg and rest (words 8..255), checking the
 * magic and the version; the caller checks the config. */
static bl_status_t read_header(FILE *f, const char *path, bl_gpt2_config_t *cfg, uint32_t *rest,
                               bl_error_t *err)
{
    unsigned char h[GPT2_HEADER_NBYTES];
    size_t got = fread(h, 1, sizeof h, f);
    if (ferror(f)) {
        return bl_error_set(err, BL_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    }
    if (got < sizeof h) {
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: header is %zu bytes, shorter than the %d-byte checkpoint header",
                            path, got, GPT2_HEADER_NBYTES);
    }
    long magic = (int32_t)bl_le_get32(h);
    long version = (int32_t)bl_le_get32(h + 4);
    if (magic != BL_GPT2_MAGIC) {
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: magic %ld is not an llm.c GPT-2 checkpoint's (expected %d)", path,
                            magic, BL_GPT2_MAGIC);
    }
    if (version != BL_GPT2_VERSION) {
        return bl_error_set(
            err, BL_ERR_FORMAT,
            "%s: version %ld%s is not supported: only float32 version %d is read", path, version,
            version == GPT2_BF16_VERSION ? " (llm.c's bfloat16 checkpoint)" : "", BL_GPT2_VERSION);
    }
    int *words[6] = {&cfg->max_seq_len, &cfg->vocab_size, &cfg->num_layers,
                     &cfg->num_heads,   &cfg->channels,   &cfg->padded_vocab_size};
    for (int i = 0; i < 6; i++) {
        *words[i] = (int32_t)bl_le_get32(h + 4 * (2 + i));
    }
    for (int i = BL_GPT2_HEADER_CONFIG; i < BL_GPT2_HEADER_WORDS; i++) {
        rest[i - BL_GPT2_HEADER_CONFIG] = bl_le_get32(h + 4 * i);
    }
    return BL_OK;
}

bl_status_t bl_gpt2_load(const char *path, const bl_allocator_t *a, bl_error_t *err,
                         bl_gpt2_file_t *out)
{
    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (out == NULL || path == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_load: %s is NULL",
                            out == NULL ? "out" : "path");
    }
    bl_gpt2_file_t m = {0};
    unsigned char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return bl_error_set(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    bl_status_t s = read_header(f, path, &m.config, m.header_rest, err);
    if (s == BL_OK) {
        s = layout(&m.config, path, NULL, &m.param_count, err);
    }
    if (s == BL_OK) {
        s = read_params(f, path, m.param_count * sizeof(float), a, err, &buf);
    }
    fclose(f);
    if (s != BL_OK) {
        return s;
    }
    /* The file is little-endian; this is the identity on little-endian
     * hosts. Each value is read before its bytes are overwritten. */
    m.params = (float *)(void *)buf;
    for (size_t i = 0; i < m.param_count; i++) {
        uint32_t bits = bl_le_get32(buf + 4 * i);
        memcpy(&m.params[i], &bits, sizeof bits);
    }
    *out = m;
    return BL_OK;
}

/* Writes the header of config c with the words 8..255 rest (NULL: zero),
 * little-endian, into out (GPT2_HEADER_NBYTES bytes). */
static void put_header(const bl_gpt2_config_t *c, const uint32_t *rest, unsigned char *out)
{
    const int words[8] = {BL_GPT2_MAGIC, BL_GPT2_VERSION, c->max_seq_len, c->vocab_size,
                          c->num_layers, c->num_heads,    c->channels,    c->padded_vocab_size};
    for (int i = 0; i < BL_GPT2_HEADER_WORDS; i++) {
        bl_le_put32(out + 4 * i, i < BL_GPT2_HEADER_CONFIG ? (uint32_t)words[i]
                                 : rest != NULL            ? rest[i - BL_GPT2_HEADER_CONFIG]
                                                           : 0u);
    }
}

bl_status_t bl_gpt2_header(const bl_gpt2_config_t *cfg, unsigned char *header, size_t *param_count,
                           bl_error_t *err)
{
    if (cfg == NULL || header == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_header: %s is NULL",
                            cfg == NULL ? "cfg" : "header");
    }
    bl_status_t s = layout(cfg, "GPT-2 config", NULL, param_count, err);
    if (s == BL_OK) {
        put_header(cfg, NULL, header);
    }
    return s;
}

/* Writes the header and the parameters of the checkpoint ctx (a valid
 * bl_gpt2_file_t), little-endian, to f. */
static int write_checkpoint(FILE *f, const void *ctx)
{
    const bl_gpt2_file_t *m = ctx;
    unsigned char chunk[4 * GPT2_WRITE_CHUNK]; /* holds the header too */
    put_header(&m->config, m->header_rest, chunk);
    int ok = fwrite(chunk, 1, GPT2_HEADER_NBYTES, f) == GPT2_HEADER_NBYTES;
    for (size_t i = 0; ok && i < m->param_count; i += GPT2_WRITE_CHUNK) {
        size_t n = m->param_count - i < GPT2_WRITE_CHUNK ? m->param_count - i : GPT2_WRITE_CHUNK;
        for (size_t j = 0; j < n; j++) {
            uint32_t bits;
            memcpy(&bits, &m->params[i + j], sizeof bits);
            bl_le_put32(chunk + 4 * j, bits);
        }
        ok = fwrite(chunk, 4, n, f) == n;
    }
    return ok;
}

/* The file replaces path whole (bl_file_replace), so that path never names
 * a partial file. */
bl_status_t bl_gpt2_write(const char *path, const bl_gpt2_file_t *m, bl_error_t *err)
{
    size_t count = 0;
    if (path == NULL || m == NULL || m->params == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_write: %s is NULL",
                            path == NULL ? "path"
                            : m == NULL  ? "m"
                                         : "m->params");
    }
    bl_status_t s = layout(&m->config, path, NULL, &count, err);
    if (s != BL_OK) {
        return s;
    }
    if (m->param_count != count) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "%s: param_count %zu is not the config's %zu parameters", path,
                            m->param_count, count);
    }
    const bl_file_words_t words = {.contents = "the parameters",
                                   .rename_before = "renaming into place from",
                                   .rename_after = "failed"};
    return bl_file_replace(path, &words, write_checkpoint, m, err);
}

bl_status_t bl_gpt2_check_seq_len(const char *path, const bl_gpt2_config_t *cfg, int T,
                                  bl_error_t *err)
{
    const char *name = path != NULL ? path : "GPT-2 checkpoint";
    if (cfg == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_gpt2_check_seq_len: cfg is NULL");
    }
    if (T <= 0) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "%s: sequence length T = %d is not positive",
                            name, T);
    }
    if (T > cfg->max_seq_len) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "%s: T larger than the checkpoint's max T: T = %d, max_seq_len maxT "
                            "= %d",
                            name, T, cfg->max_seq_len);
    }
    return BL_OK;
}

void bl_gpt2_free(bl_gpt2_file_t *m, const bl_allocator_t *a)
{
    if (m == NULL) {
        return;
    }
    bl_mem_free(a, m->params);
    memset(m, 0, sizeof *m);
}

bl_status_t bl_gpt2_load_shape(const char *path, bl_error_t *err, bl_gpt2_file_t *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return bl_error_set(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    bl_gpt2_file_t m = {0};
    struct stat st;
    bl_status_t s = read_header(f, path, &m.config, m.header_rest, err);
    if (s == BL_OK) {
        s = layout(&m.config, path, NULL, &m.param_count, err);
    }
    if (s == BL_OK && fstat(fileno(f), &st) != 0) {
        s = bl_error_set(err, BL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    const uint64_t want = GPT2_HEADER_NBYTES + (uint64_t)m.param_count * sizeof(float);
    if (s == BL_OK && (uint64_t)st.st_size != want) {
        s = bl_error_set(err, BL_ERR_FORMAT,
                         "%s: the file is %lld bytes, but its header declares %zu parameters "
                         "(%llu bytes with the header)",
                         path, (long long)st.st_size, m.param_count, (unsigned long long)want);
    }
    fclose(f);
    if (s == BL_OK) {
        *out = m;
    }
    return s;
}

bl_status_t bl_gpt2_read_part(const char *path, size_t first, size_t count, float *dst,
                              bl_error_t *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return bl_error_set(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    unsigned char *bytes = (unsigned char *)dst;
    const size_t nbytes = count * sizeof(float);
    const off_t at = (off_t)GPT2_HEADER_NBYTES + (off_t)(first * sizeof(float));
    size_t done = 0;
    while (done < nbytes) {
        ssize_t got = pread(fd, bytes + done, nbytes - done, at + (off_t)done);
        if (got <= 0) {
            close(fd);
            return bl_error_set(err, BL_ERR_IO, "%s: cannot read parameters %zu..%zu: %s", path,
                                first, first + count - 1,
                                got < 0 ? strerror(errno) : "the file is shorter than before");
        }
        done += (size_t)got;
    }
    close(fd);
    /* The file is little-endian: the identity on little-endian hosts. */
    for (size_t i = 0; i < count; i++) {
        uint32_t bits = bl_le_get32(bytes + 4 * i);
        memcpy(&dst[i], &bits, sizeof bits);
    }
    return BL_OK;
}

bl_status_t bl_gpt2_file_crc(const char *path, uint32_t *crc, bl_error_t *err)
{
    *crc = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return bl_error_set(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    unsigned char piece[64 * 1024];
    uLong sum = crc32(0L, Z_NULL, 0);
    size_t got;
    while ((got = fread(piece, 1, sizeof piece, f)) > 0) {
        sum = crc32_z(sum, piece, got);
    }
    const int failed = ferror(f);
    fclose(f);
    if (failed) {
        return bl_error_set(err, BL_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    }
    *crc = (uint32_t)sum;
    return BL_OK;
}
