/* Parameter files hold raw little-endian float32 values in layer order, and
 * nothing else. The format is an interface (external tools read and write
 * it), so it has no header: the file's length must equal the model's
 * parameter count × 4. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsync_dir.h"
#include "model_impl.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define BL_HOST_BIG_ENDIAN 1
#else
#define BL_HOST_BIG_ENDIAN 0
#endif

/* Swaps the byte order of count floats in place on big-endian hosts,
 * because the file is little-endian; on other hosts it does nothing. */
static void to_little_endian(float *values, size_t count)
{
    if (!BL_HOST_BIG_ENDIAN) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        unsigned char *b = (unsigned char *)&values[i];
        unsigned char t = b[0];
        b[0] = b[3];
        b[3] = t;
        t = b[1];
        b[1] = b[2];
        b[2] = t;
    }
}

static bl_status_t require_built(bl_model_t *m, const char *path)
{
    if (m == NULL || path == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    if (!m->built) {
        return bl_fail(m->rt, BL_ERR_INVALID_ARG, "%s: the model is not built yet", path);
    }
    return BL_OK;
}

/* Fsyncs the directory that holds path, so that a rename into it is
 * durable. Returns 0, or -1 with errno set. */
static int sync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else {
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    }
    return bl_fsync_dir(dir);
}

bl_status_t bl_model_save_params(bl_model_t *m, const char *path)
{
    bl_status_t st = require_built(m, path);
    if (st != BL_OK) {
        return st;
    }
    bl_runtime_t *rt = m->rt;
    /* The file is written under a unique temporary name beside path
     * (mkstemp), so that concurrent savers on a shared file system never
     * write the same temporary file. */
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "%s: path too long", path);
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        return bl_fail(rt, BL_ERR_IO, "%s: cannot create the temporary file %s: %s", path, tmp,
                       strerror(errno));
    }
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        int saved = errno;
        close(fd);
        remove(tmp);
        return bl_fail(rt, BL_ERR_IO, "%s: cannot open %s: %s", path, tmp, strerror(saved));
    }
    fchmod(fd, 0644); /* mkstemp's 0600 would hide the file from the group */
    size_t count = m->param_count;
    to_little_endian(m->params, count);
    size_t written = fwrite(m->params, sizeof(float), count, f);
    to_little_endian(m->params, count); /* back to host order */
    /* The file is flushed and synced before the rename, so that the name
     * never points at a partial file, and an existing file at path survives
     * any failure here. */
    int failed = written != count || fflush(f) != 0 || fsync(fileno(f)) != 0;
    int saved_errno = errno;
    if (fclose(f) != 0 && !failed) {
        failed = 1;
        saved_errno = errno;
    }
    if (failed) {
        remove(tmp);
        return bl_fail(rt, BL_ERR_IO, "%s: writing %zu parameters to %s failed: %s", path, count,
                       tmp, strerror(saved_errno));
    }
    if (rename(tmp, path) != 0) {
        saved_errno = errno;
        remove(tmp);
        return bl_fail(rt, BL_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp,
                       strerror(saved_errno));
    }
    if (sync_parent_dir(path) != 0) {
        return bl_fail(rt, BL_ERR_IO, "%s: saved, but syncing its directory failed: %s", path,
                       strerror(errno));
    }
    return BL_OK;
}

bl_status_t bl_model_load_params(bl_model_t *m, const char *path)
{
    bl_status_t st = require_built(m, path);
    if (st != BL_OK) {
        return st;
    }
    bl_runtime_t *rt = m->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    size_t count = m->param_count;
    float *staged = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return bl_fail(rt, BL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        st = bl_fail(rt, BL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = bl_fail(rt, BL_ERR_FORMAT, "%s: not a regular file", path);
        goto done;
    }
    if ((unsigned long long)sb.st_size != (unsigned long long)count * sizeof(float)) {
        st = bl_fail(rt, BL_ERR_FORMAT,
                     "%s: holds %lld bytes, but the model has %zu parameters (%zu bytes of "
                     "float32); is it from another model?",
                     path, (long long)sb.st_size, count, count * sizeof(float));
        goto done;
    }
    /* The file is read into a staging buffer, so that a failed read leaves
     * the model as it was. */
    staged = bl_mem_array(a, count, sizeof(float));
    if (staged == NULL) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "%s: no memory for %zu parameters", path, count);
        goto done;
    }
    if (fread(staged, sizeof(float), count, f) != count) {
        st = bl_fail(rt, BL_ERR_IO, "%s: short read", path);
        goto done;
    }
    to_little_endian(staged, count);
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(staged[i])) {
            st = bl_fail(rt, BL_ERR_FORMAT, "%s: parameter %zu is not a finite number", path, i);
            goto done;
        }
    }
    memcpy(m->params, staged, count * sizeof(float));
    st = BL_OK;
done:
    bl_mem_free(a, staged);
    fclose(f);
    return st;
}
