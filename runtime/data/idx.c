/* The IDX reader (idx.h). It reads an (images, labels) pair,
 * gzip-compressed or raw, through zlib's gz* layer, which passes
 * uncompressed files through as they are.
 *
 * The file layout (all multi-byte fields are big-endian):
 *   byte 0, 1   0x00 0x00
 *   byte 2      dtype, 0x08 = unsigned byte (the only one accepted)
 *   byte 3      ndims: >= 2 for images (n × d1 × ...), == 1 for labels (n)
 *   4 · ndims   the dimensions, uint32 each
 *   then        n · d1 · ... bytes of data, row-major, and nothing after.
 *
 * The header is not trusted for memory: a 20-byte file can declare 4 GiB.
 * The data is read by bl_file_read_body (file_io.h), whose buffer starts
 * small and doubles (capped at the declared size) only when it is full and
 * the file still has bytes, so a truncated or lying file fails after
 * reading what it really holds. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "file_io.h"
#include "idx.h"

#define IDX_DTYPE_UBYTE 0x08
#define IDX_MAX_DIMS    255            /* ndims is one byte */
#define IDX_GZ_BUFFER   (256u * 1024u) /* zlib's input buffer, in bytes */
#define IDX_MAX_READ    (1u << 30)     /* the most one gzread call reads (it returns an int) */

/* One open IDX file, with its header once it is parsed. */
typedef struct idx_file {
    const char *path;
    gzFile gz;
    size_t pos; /* the uncompressed bytes consumed so far */
    int ndims;
    uint32_t dims[IDX_MAX_DIMS];
    long count;    /* dims[0] */
    int features;  /* dims[1] · dims[2] · ... (1 for labels) */
    size_t nbytes; /* the declared data bytes, count · features */
} idx_file_t;

/* Formats the dimensions as "a × b × c" into buf (cap bytes), ending in
 * "..." when they do not fit. */
static void format_dims(const idx_file_t *f, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < f->ndims; i++) {
        int n = snprintf(buf + used, cap - used, "%s%lu", i == 0 ? "" : " × ",
                         (unsigned long)f->dims[i]);
        if (n < 0 || (size_t)n >= cap - used) {
            if (cap >= 4) {
                memcpy(buf + cap - 4, "...", 4);
            }
            return;
        }
        used += (size_t)n;
    }
}

/* Returns zlib's message without the "path: " prefix that gzerror puts on
 * it. */
static const char *zlib_reason(const idx_file_t *f, const char *zmsg)
{
    size_t n = strlen(f->path);
    if (zmsg == NULL) {
        return "unknown zlib error";
    }
    if (strncmp(zmsg, f->path, n) == 0 && zmsg[n] == ':' && zmsg[n + 1] == ' ') {
        return zmsg + n + 2;
    }
    return zmsg;
}

/* Returns the cause of a short or failed gzread, recorded in err: gzip
 * damage is BL_ERR_FORMAT, a failing read is BL_ERR_IO, and zlib out of
 * memory is BL_ERR_NO_MEM. Returns BL_OK when the stream simply ended. */
static bl_status_t gz_failure(idx_file_t *f, int saved_errno, bl_error_t *err)
{
    int errnum = Z_OK;
    const char *zmsg = gzerror(f->gz, &errnum);
    switch (errnum) {
    case Z_OK:
        return BL_OK;
    case Z_ERRNO:
        return bl_error_set(err, BL_ERR_IO, "%s: cannot read: %s", f->path,
                            saved_errno != 0 ? strerror(saved_errno) : zlib_reason(f, zmsg));
    case Z_BUF_ERROR: /* zlib's "unexpected end of file" inside a gzip member */
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: gzip stream is truncated (%s) after %zu uncompressed bytes",
                            f->path, zlib_reason(f, zmsg), f->pos);
    case Z_DATA_ERROR:
        return bl_error_set(err, BL_ERR_FORMAT, "%s: gzip stream is corrupt (%s)", f->path,
                            zlib_reason(f, zmsg));
    case Z_MEM_ERROR:
        return bl_error_set(err, BL_ERR_NO_MEM, "%s: zlib is out of memory", f->path);
    default:
        return bl_error_set(err, BL_ERR_IO, "%s: cannot read: %s", f->path, zlib_reason(f, zmsg));
    }
}

/* Reads up to n bytes into buf and sets *got to the count read, which is
 * below n only at the end of the stream. A read error or a damaged gzip
 * stream fails, with the cause in err. */
static bl_status_t idx_read(idx_file_t *f, void *buf, size_t n, size_t *got, bl_error_t *err)
{
    uint8_t *p = buf;
    *got = 0;
    while (*got < n) {
        size_t want = n - *got;
        if (want > IDX_MAX_READ) {
            want = IDX_MAX_READ;
        }
        errno = 0;
        int r = gzread(f->gz, p + *got, (unsigned)want);
        int saved_errno = errno;
        if (r < 0) {
            bl_status_t s = gz_failure(f, saved_errno, err);
            return s != BL_OK
                       ? s
                       : bl_error_set(err, BL_ERR_IO, "%s: cannot read: %s", f->path,
                                      saved_errno != 0 ? strerror(saved_errno) : "unknown error");
        }
        *got += (size_t)r;
        f->pos += (size_t)r;
        if (r == 0) {
            /* gzread reports a truncated gzip member as a plain end of
             * file; only gzerror tells them apart. */
            return gz_failure(f, saved_errno, err);
        }
    }
    return BL_OK;
}

/* Opens path, and parses and validates its header. images says which kind
 * of file it must be, which sets its ndims rule and the wording of
 * messages. Returns BL_OK or the failure, with the cause in err; on failure
 * f->gz is left for idx_close. */
static bl_status_t idx_open(idx_file_t *f, const char *path, int images, bl_error_t *err)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (f->gz == NULL) {
        /* gzopen sets errno when open() fails; errno 0 means zlib could not
         * allocate its state. */
        if (errno == 0 || errno == ENOMEM) {
            return bl_error_set(err, BL_ERR_NO_MEM, "%s: cannot open: out of memory", path);
        }
        return bl_error_set(err, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (gzbuffer(f->gz, IDX_GZ_BUFFER) != 0) {
        return bl_error_set(err, BL_ERR_IO, "%s: cannot set the read buffer", path);
    }

    uint8_t magic[4];
    size_t got = 0;
    bl_status_t s = idx_read(f, magic, sizeof magic, &got, err);
    if (s != BL_OK) {
        return s;
    }
    if (got == 0) {
        return bl_error_set(err, BL_ERR_FORMAT, "%s: file is empty, expected an IDX header", path);
    }
    if (got < sizeof magic) {
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: header is %zu bytes, shorter than the 4-byte IDX magic", path,
                            got);
    }
    if (magic[0] != 0 || magic[1] != 0) {
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: magic bytes 0x%02x 0x%02x are not an IDX header "
                            "(expected 0x00 0x00)",
                            path, magic[0], magic[1]);
    }
    if (magic[2] != IDX_DTYPE_UBYTE) {
        return bl_error_set(err, BL_ERR_FORMAT, "%s: dtype 0x%02x is not unsigned byte (0x%02x)",
                            path, magic[2], IDX_DTYPE_UBYTE);
    }
    f->ndims = magic[3];
    if (images && f->ndims < 2) {
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: image file has %d dimension%s, expected at least 2", path,
                            f->ndims, f->ndims == 1 ? "" : "s");
    }
    if (!images && f->ndims != 1) {
        return bl_error_set(err, BL_ERR_FORMAT, "%s: label file has %d dimension%s, expected 1",
                            path, f->ndims, f->ndims == 1 ? "" : "s");
    }

    uint8_t raw[4 * IDX_MAX_DIMS];
    size_t dims_nbytes = 4 * (size_t)f->ndims;
    s = idx_read(f, raw, dims_nbytes, &got, err);
    if (s != BL_OK) {
        return s;
    }
    if (got < dims_nbytes) {
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: header ends inside the dimensions: %d declared (%zu bytes), "
                            "only %zu bytes present",
                            path, f->ndims, dims_nbytes, got);
    }
    for (int i = 0; i < f->ndims; i++) {
        const uint8_t *b = raw + 4 * i;
        f->dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    }

    char dims_text[256];
    format_dims(f, dims_text, sizeof dims_text);
    for (int i = 0; i < f->ndims; i++) {
        if (f->dims[i] == 0) {
            return bl_error_set(err, BL_ERR_FORMAT, "%s: dimension %d is 0 (dimensions %s)", path,
                                i, dims_text);
        }
    }

    /* features = d1 · d2 · ... must fit in an int. The check after each
     * factor keeps the running product below 2^31 · 2^32, so the uint64
     * product cannot overflow. */
    uint64_t features = 1;
    for (int i = 1; i < f->ndims; i++) {
        features *= f->dims[i];
        if (features > (uint64_t)INT_MAX) {
            return bl_error_set(err, BL_ERR_FORMAT,
                                "%s: dimensions %s overflow: the features per sample exceed "
                                "INT_MAX (%d)",
                                path, dims_text, INT_MAX);
        }
    }
#if LONG_MAX < UINT32_MAX
    if (f->dims[0] > (uint32_t)LONG_MAX) {
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: dimensions %s overflow: the sample count exceeds LONG_MAX", path,
                            dims_text);
    }
#endif
    if ((uint64_t)f->dims[0] > (uint64_t)SIZE_MAX / features) {
        return bl_error_set(err, BL_ERR_FORMAT,
                            "%s: dimensions %s overflow: the data bytes exceed SIZE_MAX", path,
                            dims_text);
    }
    f->count = (long)f->dims[0];
    f->features = (int)features;
    f->nbytes = (size_t)f->dims[0] * (size_t)features;
    return BL_OK;
}

/* The read of an IDX source (bl_byte_source_t; src->ctx is the
 * idx_file_t). */
static bl_status_t idx_source_read(const bl_byte_source_t *src, void *buf, size_t n, size_t *got,
                                   bl_error_t *err)
{
    return idx_read(src->ctx, buf, n, got, err);
}

/* Reads the declared data into a new buffer (*out, f->nbytes bytes from a)
 * and checks that nothing follows it. On failure *out is NULL and err says
 * why. */
static bl_status_t idx_read_data(idx_file_t *f, const bl_allocator_t *a, bl_error_t *err,
                                 uint8_t **out)
{
    /* The compressed length says nothing of the data's, so the buffer
     * starts at the first chunk. */
    const bl_byte_source_t src = {.read = idx_source_read, .ctx = f, .path = f->path};
    bl_file_body_t body;
    *out = NULL;
    bl_status_t s = bl_file_read_body(&src, f->nbytes, "the data", a, err, &body);
    if (s != BL_OK) {
        return s;
    }
    if (body.nbytes < f->nbytes) {
        char dims_text[256];
        format_dims(f, dims_text, sizeof dims_text);
        s = bl_error_set(err, BL_ERR_FORMAT,
                         "%s: header declares %zu data bytes (%s) but the file holds only %zu",
                         f->path, f->nbytes, dims_text, body.nbytes);
    } else if (body.trailing > 0) {
        s = bl_error_set(err, BL_ERR_FORMAT, "%s: %s%zu byte%s after the declared data", f->path,
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

/* Closes f; closing it again does nothing. With report set, a failing
 * close is an error, because gzclose is where zlib reports a stream that
 * ended inside a gzip member, or a failing close(). Without report it
 * returns BL_OK. */
static bl_status_t idx_close(idx_file_t *f, int report, bl_error_t *err)
{
    if (f->gz == NULL) {
        return BL_OK;
    }
    errno = 0;
    int r = gzclose(f->gz);
    int saved_errno = errno;
    f->gz = NULL;
    if (!report || r == Z_OK) {
        return BL_OK;
    }
    switch (r) {
    case Z_BUF_ERROR:
        return bl_error_set(err, BL_ERR_FORMAT, "%s: gzip stream is truncated", f->path);
    case Z_ERRNO:
        return bl_error_set(err, BL_ERR_IO, "%s: cannot close: %s", f->path,
                            saved_errno != 0 ? strerror(saved_errno) : "unknown error");
    case Z_MEM_ERROR:
        return bl_error_set(err, BL_ERR_NO_MEM, "%s: zlib is out of memory", f->path);
    default:
        return bl_error_set(err, BL_ERR_IO, "%s: cannot close (zlib error %d)", f->path, r);
    }
}

bl_status_t bl_idx_load_pair(const char *images_path, const char *labels_path, int classes,
                             const bl_allocator_t *a, bl_error_t *err, bl_idx_pair_t *out)
{
    bl_status_t s = BL_OK;
    idx_file_t images = {0};
    idx_file_t labels = {0};
    uint8_t *pixels = NULL;
    uint8_t *label_bytes = NULL;

    if (out == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_idx_load_pair: out is NULL");
    }
    memset(out, 0, sizeof *out);
    if (images_path == NULL || labels_path == NULL) {
        return bl_error_set(err, BL_ERR_INVALID_ARG, "bl_idx_load_pair: %s path is NULL",
                            images_path == NULL ? "images" : "labels");
    }
    if (classes < 0) {
        return bl_error_set(err, BL_ERR_INVALID_ARG,
                            "bl_idx_load_pair: classes %d is negative (0: max label + 1)", classes);
    }

    /* Both headers are read first, so that a count mismatch fails before
     * any data is read. */
    s = idx_open(&images, images_path, 1, err);
    if (s != BL_OK) {
        goto fail;
    }
    s = idx_open(&labels, labels_path, 0, err);
    if (s != BL_OK) {
        goto fail;
    }
    if (labels.count != images.count) {
        s = bl_error_set(err, BL_ERR_FORMAT, "%s: %ld labels but %s has %ld images", labels_path,
                         labels.count, images_path, images.count);
        goto fail;
    }

    s = idx_read_data(&images, a, err, &pixels);
    if (s != BL_OK) {
        goto fail;
    }
    s = idx_close(&images, 1, err);
    if (s != BL_OK) {
        goto fail;
    }
    s = idx_read_data(&labels, a, err, &label_bytes);
    if (s != BL_OK) {
        goto fail;
    }
    s = idx_close(&labels, 1, err);
    if (s != BL_OK) {
        goto fail;
    }

    if (classes > 0) {
        for (long i = 0; i < labels.count; i++) {
            if (label_bytes[i] >= classes) {
                s = bl_error_set(err, BL_ERR_FORMAT,
                                 "%s: label %d of sample %ld is not below the %d classes",
                                 labels_path, label_bytes[i], i, classes);
                goto fail;
            }
        }
    } else {
        int max_label = 0;
        for (long i = 0; i < labels.count; i++) {
            if (label_bytes[i] > max_label) {
                max_label = label_bytes[i];
            }
        }
        classes = max_label + 1;
    }

    out->count = images.count;
    out->features = images.features;
    out->classes = classes;
    out->pixels = pixels;
    out->labels = label_bytes;
    return BL_OK;

fail:
    idx_close(&images, 0, NULL);
    idx_close(&labels, 0, NULL);
    bl_mem_free(a, pixels);
    bl_mem_free(a, label_bytes);
    return s;
}

void bl_idx_pair_free(bl_idx_pair_t *p, const bl_allocator_t *a)
{
    if (p == NULL) {
        return;
    }
    bl_mem_free(a, p->pixels);
    bl_mem_free(a, p->labels);
    memset(p, 0, sizeof *p);
}
