/* libFuzzer harness of the IDX reader (runtime/data/idx.c) and of the dataset
 * built on it (bl_dataset_open_idx, runtime/data/dataset.c).
 *
 * The reader takes paths, so each input becomes two files under /tmp
 * (mkstemp), removed before the run returns. Input layout:
 *   byte 0       mode: bit 0 gzip the images file, bit 1 gzip the labels
 *                file (the harness compresses; raw bytes that happen to be
 *                gzip are read as gzip too), bits 2-4 n: the n-th allocation
 *                of each load fails (0: none)
 *   byte 1       classes (0: max label + 1)
 *   bytes 2, 3   images file length L, big-endian (cut to what is left)
 *   then         L bytes of the images file, the rest is the labels file.
 * Inputs shorter than 4 bytes are ignored.
 *
 * Every load goes through a counting allocator: a load that fails must
 * leave *out zeroed and its message set, one that succeeds must return a
 * pair that honours the header's promises, and the allocations must
 * balance once it is freed. A pair that loads is then opened as a dataset
 * through a runtime on MPI_COMM_SELF (MPI is initialised once), whose
 * samples must be the pair's bytes scaled to [0, 1]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>
#include <zlib.h>

#include "ballast.h"
#include "fuzz_mpi.h"
#include "dataset_impl.h"
#include "idx.h"

#define FUZZ_TMP_TEMPLATE "/tmp/ballast_fuzz_idx_XXXXXX"

/* Counts allocations; fail_at = n > 0 makes the n-th one fail. */
typedef struct fuzz_counter {
    long allocs;
    long releases;
    long fail_at;
} fuzz_counter_t;

static int g_verbose; /* $BALLAST_FUZZ_VERBOSE set: print each outcome */
static fuzz_counter_t g_pair_counter;
static fuzz_counter_t g_rt_counter;
static bl_runtime_t *g_rt;

static void *counting_alloc(size_t nbytes, void *ctx)
{
    fuzz_counter_t *c = ctx;
    c->allocs++;
    if (c->fail_at > 0 && c->allocs == c->fail_at) {
        c->releases++; /* a failed allocation holds nothing */
        return NULL;
    }
    return malloc(nbytes);
}

static void counting_release(void *ptr, void *ctx)
{
    fuzz_counter_t *c = ctx;
    if (ptr != NULL) {
        c->releases++;
        free(ptr);
    }
}

static void quiet_log(bl_log_level_t level, int rank, const char *line, void *arg)
{
    (void)level;
    (void)rank;
    (void)line;
    (void)arg;
}

/* A broken promise of the library: report it and crash, so libFuzzer
 * keeps the input. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_idx: check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    g_verbose = getenv("BALLAST_FUZZ_VERBOSE") != NULL;
    fuzz_mpi_init("fuzz_idx");
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_ERROR;
    cfg.log_fn = quiet_log;
    cfg.blas_threads = 1;
    cfg.allocator.alloc = counting_alloc;
    cfg.allocator.release = counting_release;
    cfg.allocator.ctx = &g_rt_counter;
    if (bl_runtime_create(MPI_COMM_SELF, &cfg, &g_rt) != BL_OK) {
        fprintf(stderr, "fuzz_idx: cannot create a runtime on MPI_COMM_SELF\n");
        abort();
    }
    return 0;
}

/* Writes bytes into a new file under /tmp, gzip-compressed when gz is set.
 * Returns 0 with the path in path (FUZZ_TMP_TEMPLATE-sized), or -1 with
 * nothing left behind. */
static int write_temp(char *path, const uint8_t *bytes, size_t nbytes, int gz)
{
    strcpy(path, FUZZ_TMP_TEMPLATE);
    int fd = mkstemp(path);
    if (fd < 0) {
        return -1;
    }
    int ok = 1;
    if (gz) {
        gzFile g = gzdopen(fd, "wb1");
        if (g == NULL) {
            close(fd);
            ok = 0;
        } else {
            if (nbytes > 0 && gzwrite(g, bytes, (unsigned)nbytes) != (int)nbytes) {
                ok = 0;
            }
            if (gzclose(g) != Z_OK) {
                ok = 0;
            }
        }
    } else {
        size_t done = 0;
        while (done < nbytes) {
            ssize_t w = write(fd, bytes + done, nbytes - done);
            if (w <= 0) {
                ok = 0;
                break;
            }
            done += (size_t)w;
        }
        if (close(fd) != 0) {
            ok = 0;
        }
    }
    if (!ok) {
        unlink(path);
        return -1;
    }
    return 0;
}

static const bl_allocator_t g_pair_allocator = {counting_alloc, counting_release, &g_pair_counter};

/* Loads the pair with the library's lowest-level reader and checks what
 * it promises. Returns the status; on BL_OK the caller frees *pair. */
static bl_status_t load_pair(const char *images, const char *labels, int classes, long fail_at,
                             bl_idx_pair_t *pair)
{
    bl_error_t err = {0};
    memset(pair, 0x5a, sizeof *pair);
    g_pair_counter = (fuzz_counter_t){0, 0, fail_at};

    bl_status_t s = bl_idx_load_pair(images, labels, classes, &g_pair_allocator, &err, pair);
    if (g_verbose) {
        fprintf(stderr, "fuzz_idx: %s: %s\n", bl_status_string(s), s == BL_OK ? "loaded" : err.msg);
    }
    if (s != BL_OK) {
        FUZZ_CHECK(s == BL_ERR_FORMAT || s == BL_ERR_IO || s == BL_ERR_NO_MEM);
        FUZZ_CHECK(err.status == s && err.msg[0] != '\0');
        FUZZ_CHECK(pair->count == 0 && pair->pixels == NULL && pair->labels == NULL);
        FUZZ_CHECK(s != BL_ERR_NO_MEM || fail_at > 0);
        FUZZ_CHECK(g_pair_counter.allocs == g_pair_counter.releases);
        return s;
    }
    FUZZ_CHECK(pair->count > 0 && pair->features > 0 && pair->classes > 0);
    FUZZ_CHECK(pair->pixels != NULL && pair->labels != NULL);
    FUZZ_CHECK(classes == 0 || pair->classes == classes);
    for (long i = 0; i < pair->count; i++) {
        FUZZ_CHECK(pair->labels[i] < pair->classes);
    }
    /* Touch every pixel: ASan checks the buffer holds count · features. */
    unsigned sum = 0;
    size_t n = (size_t)pair->count * (size_t)pair->features;
    for (size_t i = 0; i < n; i++) {
        sum += pair->pixels[i];
    }
    (void)sum;
    return s;
}

/* Samples [first, first + n) of d must be the pair's bytes scaled to
 * [0, 1] and its labels. */
static void check_samples(bl_dataset_t *d, const bl_idx_pair_t *pair, long first, int n)
{
    size_t row = (size_t)pair->features;
    float *x = malloc((size_t)n * row * sizeof *x);
    int *y = malloc((size_t)n * sizeof *y);
    FUZZ_CHECK(x != NULL && y != NULL);
    FUZZ_CHECK(bl_dataset_gather_range(d, first, n, x, y) == BL_OK);
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(y[i] == pair->labels[first + i]);
        for (size_t j = 0; j < row; j++) {
            uint8_t byte = pair->pixels[(size_t)(first + i) * row + j];
            FUZZ_CHECK(x[(size_t)i * row + j] == (float)byte * (1.0f / 255.0f));
        }
    }
    free(x);
    free(y);
}

/* Opens the same files as a dataset through the runtime: it must agree
 * with the reader (or fail only for the injected allocation failure). */
static void open_dataset(const char *images, const char *labels, int classes, long fail_at,
                         const bl_idx_pair_t *pair)
{
    g_rt_counter.allocs = 0;
    g_rt_counter.releases = 0;
    g_rt_counter.fail_at = fail_at;
    bl_dataset_t *d = NULL;
    bl_status_t s = bl_dataset_open_idx(g_rt, images, labels, classes, &d);
    g_rt_counter.fail_at = 0;
    if (s != BL_OK) {
        FUZZ_CHECK(s == BL_ERR_NO_MEM && fail_at > 0 && d == NULL);
        FUZZ_CHECK(bl_last_error(g_rt)[0] != '\0');
    } else {
        FUZZ_CHECK(bl_dataset_count(d) == pair->count);
        FUZZ_CHECK(bl_dataset_features(d) == pair->features);
        FUZZ_CHECK(bl_dataset_classes(d) == pair->classes);
        /* the first samples and the last one */
        check_samples(d, pair, 0, pair->count < 4 ? (int)pair->count : 4);
        check_samples(d, pair, pair->count - 1, 1);
        bl_dataset_destroy(d);
    }
    FUZZ_CHECK(g_rt_counter.allocs == g_rt_counter.releases);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) {
        return 0;
    }
    int gz_images = data[0] & 1;
    int gz_labels = (data[0] >> 1) & 1;
    long fail_at = (data[0] >> 2) & 7;
    int classes = data[1];
    size_t images_nbytes = (size_t)data[2] << 8 | data[3];
    data += 4;
    size -= 4;
    if (images_nbytes > size) {
        images_nbytes = size;
    }

    char images[sizeof FUZZ_TMP_TEMPLATE];
    char labels[sizeof FUZZ_TMP_TEMPLATE];
    if (write_temp(images, data, images_nbytes, gz_images) != 0) {
        return 0;
    }
    if (write_temp(labels, data + images_nbytes, size - images_nbytes, gz_labels) != 0) {
        unlink(images);
        return 0;
    }

    bl_idx_pair_t pair;
    if (load_pair(images, labels, classes, fail_at, &pair) == BL_OK) {
        open_dataset(images, labels, classes, fail_at, &pair);
        bl_idx_pair_free(&pair, &g_pair_allocator);
        FUZZ_CHECK(g_pair_counter.allocs == g_pair_counter.releases);
    }
    unlink(images);
    unlink(labels);
    return 0;
}
