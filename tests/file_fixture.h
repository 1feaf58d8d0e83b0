/* Shared pieces of the file-format tests (token files, IDX, GPT-2
 * checkpoints): a fresh temporary directory the test files are written
 * into, whole-file writes and reads, and a counting allocator that also
 * tracks live and peak bytes, so a test can see that a lying header sized
 * nothing. Header-only (static inline); include cmocka.h first: the helpers
 * fail the running test with cmocka's assertions. */
#ifndef BL_FILE_FIXTURE_H
#define BL_FILE_FIXTURE_H

#include <dirent.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ballast.h"

/* ---- Temporary directory -------------------------------------------------- */

#define TMP_DIR_MAX_FILES 128

/* A temporary directory and the paths handed out in it (tmp_path). */
typedef struct tmp_dir {
    char path[64];
    char *files[TMP_DIR_MAX_FILES];
    int file_count;
} tmp_dir_t;

/* Makes the fresh directory /tmp/ballast_test_<tag>_XXXXXX (mkdtemp) and
 * puts its name in d->path. Returns 0, or -1 when it cannot. */
static inline int tmp_dir_create(tmp_dir_t *d, const char *tag)
{
    d->file_count = 0;
    int n = snprintf(d->path, sizeof d->path, "/tmp/ballast_test_%s_XXXXXX", tag);
    if (n < 0 || (size_t)n >= sizeof d->path) {
        return -1;
    }
    return mkdtemp(d->path) == NULL ? -1 : 0;
}

/* Removes every entry of the directory (files, FIFOs, and the empty
 * directories a test makes as targets), then the directory, and frees the
 * paths tmp_path handed out. Returns rmdir's result: 0, or -1. */
static inline int tmp_dir_remove(tmp_dir_t *d)
{
    DIR *dir = opendir(d->path);
    char path[PATH_MAX];
    for (struct dirent *e = dir != NULL ? readdir(dir) : NULL; e != NULL; e = readdir(dir)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", d->path, e->d_name);
            remove(path);
        }
    }
    if (dir != NULL) {
        closedir(dir);
    }
    for (int i = 0; i < d->file_count; i++) {
        free(d->files[i]);
    }
    d->file_count = 0;
    return rmdir(d->path);
}

/* The path of name in the directory; the same name gives the same pointer.
 * Belongs to d until tmp_dir_remove. Fails the test past
 * TMP_DIR_MAX_FILES names. */
static inline const char *tmp_path(tmp_dir_t *d, const char *name)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s/%s", d->path, name);
    for (int i = 0; i < d->file_count; i++) {
        if (strcmp(d->files[i], buf) == 0) {
            return d->files[i];
        }
    }
    assert_true(d->file_count < TMP_DIR_MAX_FILES);
    d->files[d->file_count] = strdup(buf);
    assert_non_null(d->files[d->file_count]);
    return d->files[d->file_count++];
}

/* Writes nbytes bytes (bytes may be NULL when nbytes is 0) to name in the
 * directory, replacing it. Returns its path (as tmp_path); fails the test
 * when the file cannot be written. */
static inline const char *write_raw(tmp_dir_t *d, const char *name, const uint8_t *bytes,
                                    size_t nbytes)
{
    const char *path = tmp_path(d, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (nbytes > 0) {
        assert_int_equal(fwrite(bytes, 1, nbytes, f), nbytes);
    }
    assert_int_equal(fclose(f), 0);
    return path;
}

/* The number of entries of the directory whose names start with prefix
 * (to see that no temporary file was left behind). */
static inline int count_entries(const tmp_dir_t *d, const char *prefix)
{
    int n = 0;
    DIR *dir = opendir(d->path);
    assert_non_null(dir);
    for (struct dirent *e = readdir(dir); e != NULL; e = readdir(dir)) {
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    }
    closedir(dir);
    return n;
}

/* The bytes of a file: malloc'd (the caller frees), *nbytes long. Fails
 * the test when the file cannot be read. */
static inline uint8_t *read_whole(const char *path, size_t *nbytes)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *nbytes = (size_t)n;
    return buf;
}

/* main() of a file-format test: the directory d made (tag as in
 * tmp_dir_create), the group run, the directory removed. Returns the
 * failures, plus 1 when the directory cannot be made or removed. */
static inline int run_tests_in_tmp_dir(const char *name, const struct CMUnitTest *tests,
                                       size_t count, tmp_dir_t *d, const char *tag)
{
    if (tmp_dir_create(d, tag) != 0) {
        fprintf(stderr, "%s: cannot make a temporary directory for tag %s\n", name, tag);
        return 1;
    }
    int failed = _cmocka_run_group_tests(name, tests, count, NULL, NULL);
    return failed + (tmp_dir_remove(d) != 0);
}

/* ---- Counting allocator --------------------------------------------------- */

/* Counts allocations and releases, tracks live and peak bytes, and fails
 * the fail_at-th allocation (1-based; 0: never; a failed one is not
 * counted). */
typedef struct counting {
    long allocs;
    long releases;
    long fail_at;
    size_t live_nbytes;
    size_t peak_nbytes;
} counting_t;

/* Each block starts with its size, aligned for anything. */
typedef union counting_prefix {
    max_align_t align;
    size_t nbytes;
} counting_prefix_t;

static inline void *counting_peak_alloc(size_t nbytes, void *ctx)
{
    counting_t *c = ctx;
    if (c->fail_at != 0 && c->allocs + 1 == c->fail_at) {
        return NULL;
    }
    counting_prefix_t *p = malloc(sizeof *p + nbytes);
    if (p == NULL) {
        return NULL;
    }
    c->allocs++;
    p->nbytes = nbytes;
    c->live_nbytes += nbytes;
    c->peak_nbytes = c->live_nbytes > c->peak_nbytes ? c->live_nbytes : c->peak_nbytes;
    return p + 1;
}

static inline void counting_peak_release(void *ptr, void *ctx)
{
    counting_t *c = ctx;
    if (ptr != NULL) {
        counting_prefix_t *p = (counting_prefix_t *)ptr - 1;
        c->releases++;
        c->live_nbytes -= p->nbytes;
        free(p);
    }
}

/* Allocator hooks that count into c, which must outlive them. */
static inline bl_allocator_t counting_allocator(counting_t *c)
{
    bl_allocator_t a = {counting_peak_alloc, counting_peak_release, c};
    return a;
}

/* ---- Checks --------------------------------------------------------------- */

/* Fails the test unless msg holds part; a NULL part always passes. */
static inline void assert_contains(const char *msg, const char *part)
{
    if (part != NULL && strstr(msg, part) == NULL) {
        fail_msg("message \"%s\" lacks \"%s\"", msg, part);
    }
}

/* Fails the test unless a load of path that returned s with the message
 * msg failed as wanted: s is want, and msg names path and holds phrase. */
static inline void check_failed_load(bl_status_t s, bl_status_t want, const char *msg,
                                     const char *path, const char *phrase)
{
    if (s != want) {
        fail_msg("status %s, expected %s (message \"%s\")", bl_status_string(s),
                 bl_status_string(want), msg);
    }
    assert_contains(msg, path);
    assert_contains(msg, phrase);
}

#endif /* BL_FILE_FIXTURE_H */
