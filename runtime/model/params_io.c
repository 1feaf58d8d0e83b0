/* Parameter files hold raw little-endian float32 values in layer order, and
 * nothing else. The format is an interface (external tools read and write
 * it), so it has no header: the file's length must equal the model's
 * parameter count × 4. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "file_io.h"
#include "model_impl.h"

/* Swaps the byte order of count floats in place on big-endian hosts,
 * because the file is little-endian; on other hosts it does nothing. */
static void to_little_endian(float *values, size_t count)
{
    if (BL_HOST_BIG_ENDIAN) {
        bl_swap_floats(values, values, count);
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
    return bl_model_hold_all(m, path);
}

/* Writes the parameters of the model ctx to f, little-endian. The model's
 * own buffer is swapped in place on big-endian hosts and swapped back. */
static int write_params(FILE *f, const void *ctx)
{
    const bl_model_t *m = ctx;
    size_t count = m->param_count;
    to_little_endian(m->params, count);
    size_t written = fwrite(m->params, sizeof(float), count, f);
    to_little_endian(m->params, count); /* back to host order */
    return written == count;
}

bl_status_t bl_model_save_params(bl_model_t *m, const char *path)
{
    bl_status_t st = require_built(m, path);
    if (st != BL_OK) {
        return st;
    }
    /* The file replaces path whole (bl_file_replace), so that the name
     * never points at a partial file, and an existing file at path survives
     * any failure here. */
    char contents[48];
    snprintf(contents, sizeof contents, "%zu parameters", m->param_count);
    const bl_file_words_t words = {.contents = contents, .done = "saved"};
    bl_error_t err;
    st = bl_file_replace(path, &words, write_params, m, &err);
    return st == BL_OK ? BL_OK : bl_fail_from(m->rt, &err);
}

bl_status_t bl_model_load_params_window(bl_model_t *m, const char *path, int lo, int hi)
{
    if (m == NULL || path == NULL) {
        return BL_ERR_INVALID_ARG;
    }
    bl_runtime_t *rt = m->rt;
    if (!m->built || lo < 0 || lo > hi || hi > m->layer_count) {
        return bl_fail(rt, BL_ERR_INVALID_ARG,
                       "%s: the model is not built, or layers [%d, %d) "
                       "are not among its %d",
                       path, lo, hi, m->layer_count);
    }
    const bl_allocator_t *a = bl_rt_allocator(rt);
    size_t first, count;
    bl_model_layer_params(m, lo, hi, &first, &count);
    float *staged = NULL;
    bl_status_t st = BL_OK;
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
    if ((unsigned long long)sb.st_size != (unsigned long long)m->param_count * sizeof(float)) {
        st = bl_fail(rt, BL_ERR_FORMAT,
                     "%s: holds %lld bytes, but the model has %zu parameters (%zu bytes of "
                     "float32); is it from another model?",
                     path, (long long)sb.st_size, m->param_count, m->param_count * sizeof(float));
        goto done;
    }
    /* The window is read into a staging buffer, so that a failed read leaves
     * the model as it was. */
    staged = bl_mem_array(a, count > 0 ? count : 1, sizeof(float));
    if (staged == NULL) {
        st = bl_fail(rt, BL_ERR_NO_MEM, "%s: no memory for %zu parameters", path, count);
        goto done;
    }
    if (first > (size_t)LONG_MAX / sizeof(float) ||
        fseek(f, (long)(first * sizeof(float)), SEEK_SET) != 0 ||
        fread(staged, sizeof(float), count, f) != count) {
        st = bl_fail(rt, BL_ERR_IO, "%s: short read", path);
        goto done;
    }
    to_little_endian(staged, count);
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(staged[i])) {
            st = bl_fail(rt, BL_ERR_FORMAT, "%s: parameter %zu is not a finite number", path,
                         first + i);
            goto done;
        }
    }
    st = bl_model_widen(m, lo, hi);
    if (st == BL_OK && count > 0) {
        memcpy(m->params + first, staged, count * sizeof(float));
    }
done:
    bl_mem_free(a, staged);
    fclose(f);
    return st;
}

bl_status_t bl_model_load_params(bl_model_t *m, const char *path)
{
    bl_status_t st = require_built(m, path);
    return st != BL_OK ? st : bl_model_load_params_window(m, path, 0, m->layer_count);
}
