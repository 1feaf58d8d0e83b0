/* Tests of the IDX reader (runtime/data/idx.c): valid pairs raw and gzip, one
 * test per kind of malformed input, allocation failures at every point,
 * and (when BL_TEST_FMNIST_DIR names a directory holding it) the real
 * Fashion-MNIST test set.
 *
 * Every file is written into a fresh directory under /tmp (mkdtemp), which
 * is removed after the group (file_fixture.h). Every load goes through a
 * counting allocator, so each test also checks that nothing leaks and that
 * the peak of live library memory stays small where the header lies about
 * the data. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "file_fixture.h"
#include "idx.h"

#define MIB ((size_t)1024 * 1024)

static tmp_dir_t g_tmp;

/* Writes nbytes bytes gzip-compressed to name in the temporary directory;
 * returns its path. */
static const char *write_gz(const char *name, const uint8_t *bytes, size_t nbytes)
{
    const char *path = tmp_path(&g_tmp, name);
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    if (nbytes > 0) {
        assert_int_equal(gzwrite(gz, bytes, (unsigned)nbytes), (int)nbytes);
    }
    assert_int_equal(gzclose(gz), Z_OK);
    return path;
}

/* ---- IDX bytes ---------------------------------------------------------- */

/* Header 0x00 0x00 dtype ndims, big-endian uint32 dims, then data.
 * Returns a malloc'd buffer of *nbytes bytes. */
static uint8_t *build_idx(uint8_t dtype, int ndims, const uint32_t *dims, const uint8_t *data,
                          size_t ndata, size_t *nbytes)
{
    size_t n = 4 + 4 * (size_t)ndims + ndata;
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = dtype;
    buf[3] = (uint8_t)ndims;
    for (int i = 0; i < ndims; i++) {
        uint8_t *b = buf + 4 + 4 * i;
        b[0] = (uint8_t)(dims[i] >> 24);
        b[1] = (uint8_t)(dims[i] >> 16);
        b[2] = (uint8_t)(dims[i] >> 8);
        b[3] = (uint8_t)dims[i];
    }
    if (ndata > 0) {
        memcpy(buf + 4 + 4 * (size_t)ndims, data, ndata);
    }
    *nbytes = n;
    return buf;
}

/* Pixel j of image i: a fixed pseudo-random byte (incompressible enough
 * that a gzip file of a few hundred images is tens of KiB). */
static uint8_t pixel_value(long i, long j)
{
    uint32_t x = (uint32_t)(i * 7919 + j) * 2654435761u;
    return (uint8_t)(x >> 24);
}

static uint8_t label_value(long i)
{
    return (uint8_t)((i * 7) % 10);
}

/* An image file of count rows × cols images, raw or gzip. */
static const char *write_images(const char *name, int gz, uint32_t count, uint32_t rows,
                                uint32_t cols)
{
    size_t ndata = (size_t)count * rows * cols;
    uint8_t *data = malloc(ndata);
    assert_non_null(data);
    for (size_t k = 0; k < ndata; k++) {
        data[k] = pixel_value((long)(k / (rows * cols)), (long)(k % (rows * cols)));
    }
    uint32_t dims[3] = {count, rows, cols};
    size_t n = 0;
    uint8_t *bytes = build_idx(0x08, 3, dims, data, ndata, &n);
    const char *path = gz ? write_gz(name, bytes, n) : write_raw(&g_tmp, name, bytes, n);
    free(bytes);
    free(data);
    return path;
}

/* A label file of count labels label_value(i), raw or gzip. */
static const char *write_labels(const char *name, int gz, uint32_t count)
{
    uint8_t *data = malloc(count);
    assert_non_null(data);
    for (uint32_t i = 0; i < count; i++) {
        data[i] = label_value(i);
    }
    size_t n = 0;
    uint8_t *bytes = build_idx(0x08, 1, &count, data, count, &n);
    const char *path = gz ? write_gz(name, bytes, n) : write_raw(&g_tmp, name, bytes, n);
    free(bytes);
    free(data);
    return path;
}

/* ---- Checks --------------------------------------------------------------- */

static void assert_zeroed(const bl_idx_pair_t *p)
{
    assert_int_equal(p->count, 0);
    assert_int_equal(p->features, 0);
    assert_int_equal(p->classes, 0);
    assert_null(p->pixels);
    assert_null(p->labels);
}

/* Loads a pair that must fail with want; checks the message names file and
 * holds phrase, *out is zeroed, nothing leaks and the live library memory
 * never passed 1 MiB. */
static void check_fail(const char *images, const char *labels, int classes, bl_status_t want,
                       const char *file, const char *phrase)
{
    counting_t c = {0};
    bl_allocator_t a = counting_allocator(&c);
    bl_error_t err = {0};
    bl_idx_pair_t out;
    memset(&out, 0xab, sizeof out);
    bl_status_t s = bl_idx_load_pair(images, labels, classes, &a, &err, &out);
    if (s != want) {
        fail_msg("status %s, expected %s (message \"%s\")", bl_status_string(s),
                 bl_status_string(want), err.msg);
    }
    assert_int_equal(err.status, want);
    if (file != NULL) {
        assert_contains(err.msg, file);
    }
    assert_contains(err.msg, phrase);
    assert_zeroed(&out);
    assert_int_equal(c.allocs, c.releases);
    assert_int_equal(c.live_nbytes, 0);
    assert_true(c.peak_nbytes < MIB);
}

/* Loads a pair that must succeed; checks the pixels and labels against
 * pixel_value and label_value. The pair is freed. */
static void check_load(const char *images, const char *labels, int classes, long count,
                       int features, int want_classes)
{
    counting_t c = {0};
    bl_allocator_t a = counting_allocator(&c);
    bl_error_t err = {0};
    bl_idx_pair_t out;
    memset(&out, 0xab, sizeof out);
    bl_status_t s = bl_idx_load_pair(images, labels, classes, &a, &err, &out);
    if (s != BL_OK) {
        fail_msg("status %s: %s", bl_status_string(s), err.msg);
    }
    assert_int_equal(out.count, count);
    assert_int_equal(out.features, features);
    assert_int_equal(out.classes, want_classes);
    assert_non_null(out.pixels);
    assert_non_null(out.labels);
    for (long i = 0; i < count; i++) {
        assert_int_equal(out.labels[i], label_value(i));
        for (long j = 0; j < features; j++) {
            if (out.pixels[i * features + j] != pixel_value(i, j)) {
                fail_msg("pixel (%ld, %ld) is %d, expected %d", i, j, out.pixels[i * features + j],
                         pixel_value(i, j));
            }
        }
    }
    bl_idx_pair_free(&out, &a);
    assert_zeroed(&out);
    assert_int_equal(c.allocs, c.releases);
    assert_int_equal(c.live_nbytes, 0);
}

/* A valid label file of count labels, for tests whose fault is in the
 * image file (and the other way round). */
static const char *good_labels(uint32_t count)
{
    char name[64];
    snprintf(name, sizeof name, "good-labels-%lu", (unsigned long)count);
    return write_labels(name, 0, count);
}

static const char *good_images(uint32_t count)
{
    char name[64];
    snprintf(name, sizeof name, "good-images-%lu", (unsigned long)count);
    return write_images(name, 0, count, 4, 3);
}

/* ---- Valid input -------------------------------------------------------- */

static void test_raw_pair(void **state)
{
    (void)state;
    const char *im = write_images("raw-images", 0, 10, 4, 3);
    const char *lb = write_labels("raw-labels", 0, 10);
    /* labels (7 i) mod 10 for i < 10 cover 0..9: classes 10 */
    check_load(im, lb, 0, 10, 12, 10);
}

static void test_gz_pair(void **state)
{
    (void)state;
    /* 300 × 28 × 28 = 235200 bytes: several buffer doublings */
    const char *im = write_images("gz-images.gz", 1, 300, 28, 28);
    const char *lb = write_labels("gz-labels.gz", 1, 300);
    check_load(im, lb, 0, 300, 784, 10);
}

static void test_raw_images_gz_labels(void **state)
{
    (void)state;
    const char *im = write_images("mix-images", 0, 20, 2, 5);
    const char *lb = write_labels("mix-labels.gz", 1, 20);
    check_load(im, lb, 0, 20, 10, 10);
}

static void test_classes_max_label_plus_one(void **state)
{
    (void)state;
    /* 3 labels: 0, 7, 4 → classes 8 */
    const char *im = write_images("max-images", 0, 3, 2, 2);
    const char *lb = write_labels("max-labels", 0, 3);
    check_load(im, lb, 0, 3, 4, 8);
}

static void test_explicit_classes(void **state)
{
    (void)state;
    const char *im = write_images("cls-images", 0, 10, 4, 3);
    const char *lb = write_labels("cls-labels", 0, 10);
    check_load(im, lb, 10, 10, 12, 10);
    check_load(im, lb, 25, 10, 12, 25);
}

static void test_four_dimensional_images(void **state)
{
    (void)state;
    /* 5 × 2 × 3 × 4: features 24 */
    uint8_t data[5 * 24];
    for (int k = 0; k < 5 * 24; k++) {
        data[k] = pixel_value(k / 24, k % 24);
    }
    uint32_t dims[4] = {5, 2, 3, 4};
    size_t n = 0;
    uint8_t *bytes = build_idx(0x08, 4, dims, data, sizeof data, &n);
    const char *im = write_raw(&g_tmp, "4d-images", bytes, n);
    free(bytes);
    check_load(im, good_labels(5), 0, 5, 24, 9);
}

/* ---- Malformed input, one kind per test ----------------------------------- */

static void test_missing_file(void **state)
{
    (void)state;
    const char *missing = tmp_path(&g_tmp, "no-such-file.gz");
    check_fail(missing, good_labels(3), 0, BL_ERR_IO, missing, "cannot open");
    check_fail(good_images(3), missing, 0, BL_ERR_IO, missing, "No such file");
}

static void test_directory_is_io_error(void **state)
{
    (void)state;
    check_fail(g_tmp.path, good_labels(3), 0, BL_ERR_IO, g_tmp.path, "cannot read");
}

static void test_empty_file(void **state)
{
    (void)state;
    const char *im = write_raw(&g_tmp, "empty-images", NULL, 0);
    check_fail(im, good_labels(3), 0, BL_ERR_FORMAT, im, "empty");
    const char *lb = write_gz("empty-labels.gz", NULL, 0);
    check_fail(good_images(3), lb, 0, BL_ERR_FORMAT, lb, "empty");
}

static void test_short_header(void **state)
{
    (void)state;
    const uint8_t bytes[3] = {0x00, 0x00, 0x08};
    const char *im = write_raw(&g_tmp, "short-images", bytes, sizeof bytes);
    check_fail(im, good_labels(3), 0, BL_ERR_FORMAT, im, "header is 3 bytes");
}

static void test_header_ends_inside_dims(void **state)
{
    (void)state;
    /* 3 dimensions declared, 6 of their 12 bytes present */
    const uint8_t bytes[10] = {0x00, 0x00, 0x08, 0x03, 0, 0, 0, 3, 0, 0};
    const char *im = write_raw(&g_tmp, "cut-dims-images", bytes, sizeof bytes);
    check_fail(im, good_labels(3), 0, BL_ERR_FORMAT, im, "inside the dimensions");
}

static void test_wrong_magic(void **state)
{
    (void)state;
    size_t n = 0;
    uint32_t count = 3;
    const uint8_t data[3] = {0, 1, 2};
    uint8_t *bytes = build_idx(0x08, 1, &count, data, 3, &n);
    bytes[1] = 0x01;
    const char *lb = write_raw(&g_tmp, "magic-labels", bytes, n);
    free(bytes);
    check_fail(good_images(3), lb, 0, BL_ERR_FORMAT, lb, "magic bytes 0x00 0x01");
}

static void test_wrong_dtype(void **state)
{
    (void)state;
    size_t n = 0;
    uint32_t dims[3] = {3, 4, 3};
    uint8_t data[36] = {0};
    uint8_t *bytes = build_idx(0x0d, 3, dims, data, sizeof data, &n); /* 0x0d: float */
    const char *im = write_gz("dtype-images.gz", bytes, n);
    free(bytes);
    check_fail(im, good_labels(3), 0, BL_ERR_FORMAT, im, "dtype 0x0d is not unsigned byte");
    /* the same fault in the label file names the label file */
    uint32_t count = 3;
    bytes = build_idx(0x09, 1, &count, data, 3, &n);
    const char *lb = write_raw(&g_tmp, "dtype-labels", bytes, n);
    free(bytes);
    check_fail(good_images(3), lb, 0, BL_ERR_FORMAT, lb, "dtype 0x09");
}

static void test_image_one_dimension(void **state)
{
    (void)state;
    size_t n = 0;
    uint32_t count = 3;
    const uint8_t data[3] = {1, 2, 3};
    uint8_t *bytes = build_idx(0x08, 1, &count, data, 3, &n);
    const char *im = write_raw(&g_tmp, "1d-images", bytes, n);
    free(bytes);
    check_fail(im, good_labels(3), 0, BL_ERR_FORMAT, im,
               "image file has 1 dimension, expected at least 2");
}

static void test_label_two_dimensions(void **state)
{
    (void)state;
    size_t n = 0;
    uint32_t dims[2] = {3, 1};
    const uint8_t data[3] = {1, 2, 3};
    uint8_t *bytes = build_idx(0x08, 2, dims, data, 3, &n);
    const char *lb = write_raw(&g_tmp, "2d-labels", bytes, n);
    free(bytes);
    check_fail(good_images(3), lb, 0, BL_ERR_FORMAT, lb, "label file has 2 dimensions, expected 1");
}

static void test_zero_dimension(void **state)
{
    (void)state;
    size_t n = 0;
    uint32_t dims[3] = {3, 4, 0};
    uint8_t *bytes = build_idx(0x08, 3, dims, NULL, 0, &n);
    const char *im = write_raw(&g_tmp, "zero-dim-images", bytes, n);
    free(bytes);
    check_fail(im, good_labels(3), 0, BL_ERR_FORMAT, im, "dimension 2 is 0");
    /* a zero sample count too */
    uint32_t count = 0;
    bytes = build_idx(0x08, 1, &count, NULL, 0, &n);
    const char *lb = write_raw(&g_tmp, "zero-labels", bytes, n);
    free(bytes);
    check_fail(good_images(3), lb, 0, BL_ERR_FORMAT, lb, "dimension 0 is 0");
}

static void test_dimension_overflow(void **state)
{
    (void)state;
    /* 0xFFFFFFFF³: the features alone exceed INT_MAX; the counting
     * allocator's peak (< 1 MiB, in check_fail) shows nothing was sized
     * from the header. */
    size_t n = 0;
    uint32_t dims[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    const uint8_t data[4] = {1, 2, 3, 4};
    uint8_t *bytes = build_idx(0x08, 3, dims, data, sizeof data, &n);
    const char *im = write_raw(&g_tmp, "overflow-images", bytes, n);
    free(bytes);
    check_fail(im, good_labels(3), 0, BL_ERR_FORMAT, im, "overflow");
    /* 65536 × 32768 = 2^31 features: one past INT_MAX */
    uint32_t dims2[3] = {3, 65536, 32768};
    bytes = build_idx(0x08, 3, dims2, data, sizeof data, &n);
    const char *im2 = write_raw(&g_tmp, "overflow2-images", bytes, n);
    free(bytes);
    check_fail(im2, good_labels(3), 0, BL_ERR_FORMAT, im2, "3 × 65536 × 32768 overflow");
}

static void test_header_declares_more_than_present(void **state)
{
    (void)state;
    /* 1,000,000 × 28 × 28 = 784,000,000 bytes declared, 10 present. The
     * label file agrees on the count so the data read is reached. */
    size_t n = 0;
    uint32_t dims[3] = {1000000, 28, 28};
    const uint8_t data[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    uint8_t *bytes = build_idx(0x08, 3, dims, data, sizeof data, &n);
    const char *im = write_gz("liar-images.gz", bytes, n);
    free(bytes);
    uint32_t count = 1000000;
    bytes = build_idx(0x08, 1, &count, data, sizeof data, &n);
    const char *lb = write_raw(&g_tmp, "liar-labels", bytes, n);
    free(bytes);
    check_fail(im, lb, 0, BL_ERR_FORMAT, im,
               "header declares 784000000 data bytes (1000000 × 28 × 28) but the file holds "
               "only 10");
}

static void test_truncated_data(void **state)
{
    (void)state;
    /* 10 × 2 × 2 = 40 declared, 39 present */
    size_t n = 0;
    uint32_t dims[3] = {10, 2, 2};
    uint8_t data[40] = {0};
    uint8_t *bytes = build_idx(0x08, 3, dims, data, 39, &n);
    const char *im = write_raw(&g_tmp, "truncated-images", bytes, n);
    free(bytes);
    check_fail(im, good_labels(10), 0, BL_ERR_FORMAT, im, "declares 40 data bytes");
    check_fail(im, good_labels(10), 0, BL_ERR_FORMAT, im, "holds only 39");
}

static void test_trailing_bytes(void **state)
{
    (void)state;
    size_t n = 0;
    uint32_t count = 4;
    const uint8_t data[7] = {0, 1, 2, 3, 9, 9, 9};
    uint8_t *bytes = build_idx(0x08, 1, &count, data, sizeof data, &n);
    const char *lb = write_raw(&g_tmp, "trailing-labels", bytes, n);
    const char *lbz = write_gz("trailing-labels.gz", bytes, n);
    free(bytes);
    check_fail(good_images(4), lb, 0, BL_ERR_FORMAT, lb, "3 bytes after the declared data");
    check_fail(good_images(4), lbz, 0, BL_ERR_FORMAT, lbz, "3 bytes after the declared data");
}

static void test_truncated_gz_stream(void **state)
{
    (void)state;
    const char *whole = write_images("whole-images.gz", 1, 100, 28, 28);
    size_t n = 0;
    uint8_t *bytes = read_whole(whole, &n);
    assert_true(n > 1000);
    /* cut in the middle of the deflate data, and inside the 8-byte trailer */
    const char *half = write_raw(&g_tmp, "half-images.gz", bytes, n / 2);
    const char *no_trailer = write_raw(&g_tmp, "no-trailer-images.gz", bytes, n - 4);
    free(bytes);
    check_fail(half, good_labels(100), 0, BL_ERR_FORMAT, half, "gzip stream is truncated");
    check_fail(no_trailer, good_labels(100), 0, BL_ERR_FORMAT, no_trailer,
               "gzip stream is truncated");
}

static void test_corrupt_gz_stream(void **state)
{
    (void)state;
    const char *whole = write_images("crc-images.gz", 1, 10, 4, 3);
    size_t n = 0;
    uint8_t *bytes = read_whole(whole, &n);
    bytes[n - 8] ^= 0xff; /* the CRC-32 of the gzip trailer */
    const char *bad = write_raw(&g_tmp, "bad-crc-images.gz", bytes, n);
    free(bytes);
    check_fail(bad, good_labels(10), 0, BL_ERR_FORMAT, bad, "gzip stream is corrupt");
}

static void test_count_mismatch(void **state)
{
    (void)state;
    const char *im = good_images(10);
    const char *lb = good_labels(9);
    check_fail(im, lb, 0, BL_ERR_FORMAT, lb, "9 labels but");
    check_fail(im, lb, 0, BL_ERR_FORMAT, im, "has 10 images");
}

static void test_label_not_below_classes(void **state)
{
    (void)state;
    /* labels 0, 7, 4, 1, 8: label 7 of sample 1 is the first ≥ 5 */
    check_fail(good_images(5), good_labels(5), 5, BL_ERR_FORMAT, "good-labels-5",
               "label 7 of sample 1 is not below the 5 classes");
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    const char *im = good_images(3);
    const char *lb = good_labels(3);
    check_fail(NULL, lb, 0, BL_ERR_INVALID_ARG, NULL, "images path is NULL");
    check_fail(im, NULL, 0, BL_ERR_INVALID_ARG, NULL, "labels path is NULL");
    check_fail(im, lb, -1, BL_ERR_INVALID_ARG, NULL, "classes -1 is negative");
    /* err and the allocator may be NULL */
    bl_idx_pair_t out;
    memset(&out, 0xab, sizeof out);
    assert_int_equal(bl_idx_load_pair(im, lb, -2, NULL, NULL, &out), BL_ERR_INVALID_ARG);
    assert_zeroed(&out);
    assert_int_equal(bl_idx_load_pair(im, lb, 0, NULL, NULL, NULL), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_idx_load_pair(im, lb, 0, NULL, NULL, &out), BL_OK);
    assert_int_equal(out.count, 3);
    bl_idx_pair_free(&out, NULL);
    assert_zeroed(&out);
    bl_idx_pair_free(NULL, NULL);
}

/* ---- Allocation failures ------------------------------------------------ */

/* Fails the 1st, 2nd, ... allocation until a load succeeds: each failure
 * must be BL_ERR_NO_MEM, leave *out zeroed and leak nothing. */
static void check_every_allocation_failure(const char *im, const char *lb)
{
    for (long fail_at = 1;; fail_at++) {
        assert_true(fail_at < 100);
        counting_t c = {.fail_at = fail_at};
        bl_allocator_t a = counting_allocator(&c);
        bl_error_t err = {0};
        bl_idx_pair_t out;
        memset(&out, 0xab, sizeof out);
        bl_status_t s = bl_idx_load_pair(im, lb, 0, &a, &err, &out);
        if (s == BL_OK) {
            /* images: 64 KiB, 128 KiB, the whole; labels: one buffer */
            assert_true(fail_at > 4);
            assert_int_equal(out.count, 300);
            bl_idx_pair_free(&out, &a);
            assert_int_equal(c.allocs, c.releases);
            return;
        }
        if (s != BL_ERR_NO_MEM) {
            fail_msg("allocation %ld failed: status %s (%s)", fail_at, bl_status_string(s),
                     err.msg);
        }
        assert_contains(err.msg, "cannot allocate");
        assert_zeroed(&out);
        assert_int_equal(c.allocs, c.releases);
        assert_int_equal(c.live_nbytes, 0);
    }
}

static void test_allocation_failures(void **state)
{
    (void)state;
    check_every_allocation_failure(write_images("oom-images", 0, 300, 28, 28),
                                   write_labels("oom-labels", 0, 300));
    check_every_allocation_failure(write_images("oom-images.gz", 1, 300, 28, 28),
                                   write_labels("oom-labels.gz", 1, 300));
}

/* ---- The real data set -------------------------------------------------- */

static void test_fashion_mnist_t10k(void **state)
{
    (void)state;
    const char *dir = getenv("BL_TEST_FMNIST_DIR");
    char im[PATH_MAX];
    char lb[PATH_MAX];
    struct stat st;
    if (dir == NULL || dir[0] == '\0') {
        skip();
    }
    snprintf(im, sizeof im, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(lb, sizeof lb, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if (stat(im, &st) != 0 || stat(lb, &st) != 0) {
        skip();
    }
    counting_t c = {0};
    bl_allocator_t a = counting_allocator(&c);
    bl_error_t err = {0};
    bl_idx_pair_t out;
    bl_status_t s = bl_idx_load_pair(im, lb, 0, &a, &err, &out);
    if (s != BL_OK) {
        fail_msg("status %s: %s", bl_status_string(s), err.msg);
    }
    assert_int_equal(out.count, 10000);
    assert_int_equal(out.features, 784);
    assert_int_equal(out.classes, 10);
    /* explicit classes 10 agree */
    bl_idx_pair_t again;
    assert_int_equal(bl_idx_load_pair(im, lb, 10, &a, &err, &again), BL_OK);
    assert_memory_equal(out.labels, again.labels, 10000);
    bl_idx_pair_free(&again, &a);
    bl_idx_pair_free(&out, &a);
    assert_int_equal(c.allocs, c.releases);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_pair),
        cmocka_unit_test(test_gz_pair),
        cmocka_unit_test(test_raw_images_gz_labels),
        cmocka_unit_test(test_classes_max_label_plus_one),
        cmocka_unit_test(test_explicit_classes),
        cmocka_unit_test(test_four_dimensional_images),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_directory_is_io_error),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_short_header),
        cmocka_unit_test(test_header_ends_inside_dims),
        cmocka_unit_test(test_wrong_magic),
        cmocka_unit_test(test_wrong_dtype),
        cmocka_unit_test(test_image_one_dimension),
        cmocka_unit_test(test_label_two_dimensions),
        cmocka_unit_test(test_zero_dimension),
        cmocka_unit_test(test_dimension_overflow),
        cmocka_unit_test(test_header_declares_more_than_present),
        cmocka_unit_test(test_truncated_data),
        cmocka_unit_test(test_trailing_bytes),
        cmocka_unit_test(test_truncated_gz_stream),
        cmocka_unit_test(test_corrupt_gz_stream),
        cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_label_not_below_classes),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_fashion_mnist_t10k),
    };
    return run_tests_in_tmp_dir("test_idx", tests, sizeof tests / sizeof tests[0], &g_tmp, "idx");
}
