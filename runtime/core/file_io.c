/* The whole-file writer and reader that the file formats share
 * (file_io.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "file_io.h"
#include "fsync_dir.h"
#include "internal.h"

#define FILE_FIRST_CHUNK (64u * 1024u) /* the first read buffer, at least */
#define FILE_SCRATCH     4096u         /* the bytes read at a time when counting trailing bytes */

bl_status_t bl_file_replace(const char *path, const bl_file_words_t *words, bl_file_write_fn fill,
                            const void *ctx, bl_error_t *err)
{
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
    /* Flushed and synced before the rename, so that path never names a
     * partial file. */
    int ok = fill(f, ctx);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        remove(tmp);
        return bl_error_set(err, BL_ERR_IO, "%s: writing %s to %s failed: %s", path,
                            words->contents, tmp, strerror(saved));
    }
    if (rename(tmp, path) != 0) {
        saved = errno;
        remove(tmp);
        return bl_error_set(err, BL_ERR_IO, "%s: %s %s %s: %s", path,
                            words->rename_before != NULL ? words->rename_before : "cannot rename",
                            tmp, words->rename_after != NULL ? words->rename_after : "into place",
                            strerror(saved));
    }
    char *slash = strrchr(tmp, '/');
    if (slash != NULL) {
        slash[slash == tmp ? 1 : 0] = '\0'; /* tmp becomes the directory */
    }
    if (bl_fsync_dir(slash == NULL ? "." : tmp) != 0) {
        return bl_error_set(err, BL_ERR_IO, "%s: %s, but syncing its directory failed: %s", path,
                            words->done != NULL ? words->done : "written", strerror(errno));
    }
    return BL_OK;
}

bl_status_t bl_file_read_body(const bl_byte_source_t *src, size_t want, const char *contents,
                              const bl_allocator_t *a, bl_error_t *err, bl_file_body_t *out)
{
    bl_status_t s = BL_OK;
    size_t cap = FILE_FIRST_CHUNK;
    if (src->known_nbytes >= cap) {
        cap = src->known_nbytes < want ? src->known_nbytes + 1 : want;
    }
    cap = cap < want ? cap : want;
    unsigned char *buf = bl_mem_alloc(a, cap);
    size_t n = 0;
    memset(out, 0, sizeof *out);
    for (;;) {
        if (buf == NULL) {
            return bl_error_set(err, BL_ERR_NO_MEM, "%s: cannot allocate %zu bytes for %s",
                                src->path, cap, contents);
        }
        size_t got = 0;
        s = src->read(src, buf + n, cap - n, &got, err);
        if (s != BL_OK) {
            goto fail;
        }
        n += got;
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
    size_t trailing = 0;
    while (n == want && trailing < BL_FILE_TRAILING_LIMIT) {
        unsigned char scratch[FILE_SCRATCH];
        size_t got = 0;
        s = src->read(src, scratch, sizeof scratch, &got, err);
        if (s != BL_OK) {
            goto fail;
        }
        trailing += got;
        if (got < sizeof scratch) {
            break;
        }
    }
    out->bytes = buf;
    out->nbytes = n;
    out->trailing = trailing;
    return BL_OK;

fail:
    bl_mem_free(a, buf);
    return s;
}

/* The read of a FILE source (src->ctx). */
static bl_status_t read_stdio(const bl_byte_source_t *src, void *buf, size_t n, size_t *got,
                              bl_error_t *err)
{
    FILE *f = src->ctx;
    *got = fread(buf, 1, n, f);
    if (*got < n && ferror(f)) {
        return bl_error_set(err, BL_ERR_IO, "%s: cannot read: %s", src->path, strerror(errno));
    }
    return BL_OK;
}

bl_status_t bl_file_read_rest(FILE *f, const char *path, size_t want, const char *contents,
                              const bl_allocator_t *a, bl_error_t *err, bl_file_body_t *out)
{
    bl_byte_source_t src = {.read = read_stdio, .ctx = f, .path = path, .known_nbytes = 0};
    struct stat sb;
    off_t pos = ftello(f);
    if (pos >= 0 && fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size >= pos) {
        unsigned long long rest = (unsigned long long)(sb.st_size - pos);
        src.known_nbytes = rest < SIZE_MAX ? (size_t)rest : SIZE_MAX;
    }
    return bl_file_read_body(&src, want, contents, a, err, out);
}

int bl_file_pwrite(int fd, const void *bytes, size_t nbytes, off_t offset)
{
    const unsigned char *b = bytes;
    size_t done = 0;
    while (done < nbytes) {
        size_t want = nbytes - done < (size_t)SSIZE_MAX ? nbytes - done : (size_t)SSIZE_MAX;
        ssize_t n = pwrite(fd, b + done, want, offset + (off_t)done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 && errno != 0 ? errno : EIO;
        }
        done += (size_t)n;
    }
    return 0;
}

int bl_file_pwrite_floats(int fd, const float *values, size_t count, off_t offset)
{
    if (!BL_HOST_BIG_ENDIAN) {
        return bl_file_pwrite(fd, values, count * sizeof(float), offset);
    }
    enum { SWAP_CHUNK = 1024 }; /* the floats swapped at a time */
    float chunk[SWAP_CHUNK];
    for (size_t done = 0; done < count;) {
        size_t n = count - done < SWAP_CHUNK ? count - done : SWAP_CHUNK;
        bl_swap_floats(values + done, chunk, n);
        int failed =
            bl_file_pwrite(fd, chunk, n * sizeof(float), offset + (off_t)(done * sizeof(float)));
        if (failed != 0) {
            return failed;
        }
        done += n;
    }
    return 0;
}
