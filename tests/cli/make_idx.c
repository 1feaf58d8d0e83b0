/* make_idx: writes a small synthetic IDX dataset for the ballast-train
 * tests, optionally with one deliberate fault.
 *
 *   make_idx DIR [--train N] [--test N] [--seed S] [--raw] [--corrupt KIND]
 *
 * DIR (created if missing) receives train-images-idx3-ubyte.gz,
 * train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and
 * t10k-labels-idx1-ubyte.gz (without .gz and uncompressed with --raw; the
 * other spelling of each name is removed, so the reader cannot pick a stale
 * file).
 *
 * The problem is linearly separable: 4 classes of 8×8 images; class c lights
 * quadrant c (c = 0 top left, 1 top right, 2 bottom left, 3 bottom right)
 * with values 150..229 over background noise 0..63. Labels are drawn at
 * random, so file order mixes the classes. Everything comes from --seed
 * (default 1): the same arguments give the same bytes.
 *
 * --corrupt KIND writes the same set with one fault:
 *   truncate         train images: the gzip file cut in half
 *   short-data       train images: the data ends one image before the header's count
 *   labels-mismatch  train labels: one label fewer than there are images
 *   bad-dtype        train labels: dtype 0x0b instead of 0x08
 *   empty            train labels: no bytes at all
 *   bad-magic        t10k images: magic bytes 0x00 0x03
 *   trailing         t10k labels: 3 bytes after the declared data
 *   test-label       t10k labels: label 9 on sample 0 (the set has 4 classes)
 *   test-features    t10k images: 7×7 instead of 8×8
 *   missing          t10k labels: the file is absent
 *   train-label      train labels: label 200 on sample 5 (the set has 4 classes)
 *   empty-class      train labels: no sample of class 2 (each becomes class 1)
 *
 * Exit status: 0 written, 1 an I/O failure (with a message), 2 bad usage. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <zlib.h>

#define CLASSES 4
#define SIDE    8

typedef struct options {
    const char *dir;
    long train;
    long test;
    uint64_t seed;
    int raw;
    const char *corrupt;
} options_t;

static const char *const corrupt_kinds[] = {
    "truncate", "short-data", "labels-mismatch", "bad-dtype", "empty",       "bad-magic",
    "trailing", "test-label", "test-features",   "missing",   "train-label", "empty-class",
};

/* SplitMix64: the data's own generator (not the library's, so a change to
 * the library cannot change the data). */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* An IDX file's bytes: header (magic 0x00 0x00 dtype ndims, big-endian
 * uint32 dims) then data. */
typedef struct buffer {
    uint8_t *bytes;
    size_t nbytes;
    size_t cap;
} buffer_t;

static int buffer_put(buffer_t *b, const void *data, size_t n)
{
    if (b->nbytes + n > b->cap) {
        size_t cap = b->cap == 0 ? 4096 : b->cap;
        while (cap < b->nbytes + n) {
            cap *= 2;
        }
        uint8_t *p = realloc(b->bytes, cap);
        if (p == NULL) {
            return -1;
        }
        b->bytes = p;
        b->cap = cap;
    }
    memcpy(b->bytes + b->nbytes, data, n);
    b->nbytes += n;
    return 0;
}

static int buffer_header(buffer_t *b, uint8_t dtype, int ndims, const uint32_t *dims)
{
    uint8_t head[4] = {0x00, 0x00, dtype, (uint8_t)ndims};
    if (buffer_put(b, head, sizeof head) != 0) {
        return -1;
    }
    for (int i = 0; i < ndims; i++) {
        uint8_t be[4] = {(uint8_t)(dims[i] >> 24), (uint8_t)(dims[i] >> 16),
                         (uint8_t)(dims[i] >> 8), (uint8_t)dims[i]};
        if (buffer_put(b, be, sizeof be) != 0) {
            return -1;
        }
    }
    return 0;
}

/* Writes bytes to path, gzip-compressed or raw. */
static int write_file(const char *path, const uint8_t *bytes, size_t nbytes, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb9");
        if (f == NULL) {
            fprintf(stderr, "make_idx: %s: cannot create: %s\n", path, strerror(errno));
            return -1;
        }
        int ok = nbytes == 0 || gzwrite(f, bytes, (unsigned)nbytes) == (int)nbytes;
        if (gzclose(f) != Z_OK || !ok) {
            fprintf(stderr, "make_idx: %s: write failed\n", path);
            return -1;
        }
        return 0;
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "make_idx: %s: cannot create: %s\n", path, strerror(errno));
        return -1;
    }
    int ok = nbytes == 0 || fwrite(bytes, 1, nbytes, f) == nbytes;
    if (fclose(f) != 0 || !ok) {
        fprintf(stderr, "make_idx: %s: write failed\n", path);
        return -1;
    }
    return 0;
}

/* dir/name plus ".gz" unless raw; the other spelling is removed. */
static void file_path(const options_t *o, const char *name, char *out, size_t n)
{
    char other[4096];
    snprintf(out, n, "%s/%s%s", o->dir, name, o->raw ? "" : ".gz");
    snprintf(other, sizeof other, "%s/%s%s", o->dir, name, o->raw ? ".gz" : "");
    unlink(other);
}

static int is_corrupt(const options_t *o, const char *kind)
{
    return o->corrupt != NULL && strcmp(o->corrupt, kind) == 0;
}

/* One split ("train" or "t10k") of count samples. */
static int write_split(const options_t *o, const char *prefix, long count, uint64_t *rng)
{
    int train = strcmp(prefix, "train") == 0;
    int side = !train && is_corrupt(o, "test-features") ? SIDE - 1 : SIDE;
    size_t features = (size_t)side * (size_t)side;
    uint8_t *pixels = malloc((size_t)count * features);
    uint8_t *labels = malloc((size_t)count);
    buffer_t images = {0};
    buffer_t lab = {0};
    char path[4096];
    int rc = -1;
    if (pixels == NULL || labels == NULL) {
        fprintf(stderr, "make_idx: out of memory\n");
        goto done;
    }
    for (long i = 0; i < count; i++) {
        int c = (int)(next_random(rng) % CLASSES);
        labels[i] = (uint8_t)c;
        int r0 = (c / 2) * (side / 2);
        int c0 = (c % 2) * (side / 2);
        for (int r = 0; r < side; r++) {
            for (int k = 0; k < side; k++) {
                int v = (int)(next_random(rng) % 64);
                if (r >= r0 && r < r0 + side / 2 && k >= c0 && k < c0 + side / 2) {
                    v = 150 + (int)(next_random(rng) % 80);
                }
                pixels[(size_t)i * features + (size_t)r * side + k] = (uint8_t)v;
            }
        }
    }

    /* images */
    uint32_t dims[3] = {(uint32_t)count, (uint32_t)side, (uint32_t)side};
    size_t pixel_nbytes = (size_t)count * features;
    if (train && is_corrupt(o, "short-data")) {
        pixel_nbytes -= features; /* the header still declares count images */
    }
    if (buffer_header(&images, 0x08, 3, dims) != 0 ||
        buffer_put(&images, pixels, pixel_nbytes) != 0) {
        fprintf(stderr, "make_idx: out of memory\n");
        goto done;
    }
    if (!train && is_corrupt(o, "bad-magic")) {
        images.bytes[1] = 0x03;
    }
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
    file_path(o, name, path, sizeof path);
    if (write_file(path, images.bytes, images.nbytes, !o->raw) != 0) {
        goto done;
    }
    if (train && is_corrupt(o, "truncate")) {
        struct stat sb;
        if (stat(path, &sb) != 0 || truncate(path, sb.st_size / 2) != 0) {
            fprintf(stderr, "make_idx: %s: cannot truncate: %s\n", path, strerror(errno));
            goto done;
        }
    }

    /* labels */
    uint32_t label_count = (uint32_t)count;
    if (train && is_corrupt(o, "labels-mismatch")) {
        label_count = (uint32_t)count - 1;
    }
    if (!train && is_corrupt(o, "test-label")) {
        labels[0] = 9;
    }
    if (train && is_corrupt(o, "train-label")) {
        labels[5] = 200;
    }
    for (long i = 0; train && is_corrupt(o, "empty-class") && i < count; i++) {
        labels[i] = labels[i] == 2 ? 1 : labels[i];
    }
    if (buffer_header(&lab, train && is_corrupt(o, "bad-dtype") ? 0x0b : 0x08, 1, &label_count) !=
            0 ||
        buffer_put(&lab, labels, label_count) != 0) {
        fprintf(stderr, "make_idx: out of memory\n");
        goto done;
    }
    if (!train && is_corrupt(o, "trailing")) {
        const uint8_t extra[3] = {1, 2, 3};
        if (buffer_put(&lab, extra, sizeof extra) != 0) {
            goto done;
        }
    }
    if (train && is_corrupt(o, "empty")) {
        lab.nbytes = 0;
    }
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
    file_path(o, name, path, sizeof path);
    if (!train && is_corrupt(o, "missing")) {
        unlink(path);
    } else if (write_file(path, lab.bytes, lab.nbytes, !o->raw) != 0) {
        goto done;
    }
    rc = 0;
done:
    free(images.bytes);
    free(lab.bytes);
    free(pixels);
    free(labels);
    return rc;
}

static int usage(const char *msg)
{
    if (msg != NULL) {
        fprintf(stderr, "make_idx: %s\n", msg);
    }
    fprintf(stderr, "usage: make_idx DIR [--train N] [--test N] [--seed S] [--raw] "
                    "[--corrupt KIND]\nKIND:");
    for (size_t i = 0; i < sizeof corrupt_kinds / sizeof corrupt_kinds[0]; i++) {
        fprintf(stderr, " %s", corrupt_kinds[i]);
    }
    fprintf(stderr, "\n");
    return 2;
}

/* A whole decimal integer in [lo, hi]; 0, or -1 when text is not one. */
static int parse_long(const char *text, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    options_t o = {.train = 2000, .test = 400, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--raw") == 0) {
            o.raw = 1;
        } else if (strcmp(a, "--train") == 0 || strcmp(a, "--test") == 0) {
            long *count = strcmp(a, "--train") == 0 ? &o.train : &o.test;
            if (value == NULL || parse_long(value, 2, 1000000, count) != 0) {
                return usage("--train and --test take a count in [2, 1000000]");
            }
            i++;
        } else if (strcmp(a, "--seed") == 0) {
            long seed = 0;
            if (value == NULL || parse_long(value, 0, 1000000000, &seed) != 0) {
                return usage("--seed takes an integer in [0, 1000000000]");
            }
            o.seed = (uint64_t)seed;
            i++;
        } else if (strcmp(a, "--corrupt") == 0) {
            if (value == NULL) {
                return usage("--corrupt needs a kind");
            }
            size_t k = 0;
            size_t n = sizeof corrupt_kinds / sizeof corrupt_kinds[0];
            while (k < n && strcmp(value, corrupt_kinds[k]) != 0) {
                k++;
            }
            if (k == n) {
                return usage("unknown --corrupt kind");
            }
            o.corrupt = value;
            i++;
        } else if (a[0] != '-' && o.dir == NULL) {
            o.dir = a;
        } else {
            return usage("unexpected argument");
        }
    }
    if (o.dir == NULL) {
        return usage("no directory given");
    }
    if (mkdir(o.dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_idx: %s: cannot create: %s\n", o.dir, strerror(errno));
        return 1;
    }
    /* one stream for both splits, train first */
    uint64_t rng = o.seed;
    if (write_split(&o, "train", o.train, &rng) != 0 ||
        write_split(&o, "t10k", o.test, &rng) != 0) {
        return 1;
    }
    return 0;
}
