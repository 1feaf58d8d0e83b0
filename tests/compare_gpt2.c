/* compare_gpt2 A B [RTOL [KEY_BIAS_ATOL]]: compares two GPT-2 model files in
 * llm.c's format (float32, version 3) tensor by tensor. The headers must be
 * equal, and every tensor must satisfy ||a − b|| / ||b|| <= RTOL (default
 * 1e-5), the relative norm of its difference. The key third of each
 * layer's qkvb is held to max |a − b| <= KEY_BIAS_ATOL (default 1e-4)
 * instead: a bias added to every key shifts all of a query's scores
 * equally, which the softmax ignores, so its gradient is exactly 0 and
 * what each run computes is float rounding, which AdamW's division by
 * sqrt(v) turns into steps that differ between two summation orders.
 * Prints the worst tensor; exits 0 when all hold, 1 otherwise. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_WORDS 256

/* The whole file; NULL on failure (message printed). */
static unsigned char *read_file(const char *path, long *nbytes)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "compare_gpt2: cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    *nbytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = *nbytes > HEADER_WORDS * 4 ? malloc((size_t)*nbytes) : NULL;
    if (b == NULL || fread(b, 1, (size_t)*nbytes, f) != (size_t)*nbytes) {
        fprintf(stderr, "compare_gpt2: %s: unreadable or too short (%ld bytes)\n", path, *nbytes);
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: compare_gpt2 A B [RTOL [KEY_BIAS_ATOL]]\n");
        return 2;
    }
    const double rtol = argc > 3 ? atof(argv[3]) : 1e-5;
    const double key_atol = argc > 4 ? atof(argv[4]) : 1e-4;
    long na = 0, nb = 0;
    unsigned char *a = read_file(argv[1], &na), *b = read_file(argv[2], &nb);
    if (a == NULL || b == NULL || na != nb || memcmp(a, b, HEADER_WORDS * 4) != 0) {
        if (a != NULL && b != NULL) {
            fprintf(stderr, "compare_gpt2: %s and %s differ in header or length\n", argv[1],
                    argv[2]);
        }
        free(a);
        free(b);
        return 1;
    }
    int32_t h[HEADER_WORDS];
    memcpy(h, a, sizeof h);
    const long maxT = h[2], L = h[4], C = h[6], Vp = h[7];
    const char *names[] = {"wte",      "wpe",      "ln1w", "ln1b", "qkvw", "qkvb",
                           "attprojw", "attprojb", "ln2w", "ln2b", "fcw",  "fcb",
                           "fcprojw",  "fcprojb",  "lnfw", "lnfb"};
    const long counts[] = {Vp * C,        maxT * C, L * C, L * C, L * 3 * C * C, L * 3 * C,
                           L * C * C,     L * C,    L * C, L * C, L * 4 * C * C, L * 4 * C,
                           L * C * 4 * C, L * C,    C,     C};
    const float *pa = (const float *)(a + HEADER_WORDS * 4);
    const float *pb = (const float *)(b + HEADER_WORDS * 4);
    long at = 0;
    int bad = 0;
    double worst = 0.0;
    const char *worst_name = "";
    for (int t = 0; t < 16; t++) {
        double diff = 0.0, norm = 0.0, key_max = 0.0;
        for (long i = 0; i < counts[t]; i++) {
            const double d = (double)pa[at + i] - (double)pb[at + i];
            /* qkvb is (L, 3C): the keys are [C, 2C) of each layer's row. */
            if (t == 5 && i % (3 * C) >= C && i % (3 * C) < 2 * C) {
                key_max = fmax(key_max, fabs(d));
                continue;
            }
            diff += d * d;
            norm += (double)pb[at + i] * (double)pb[at + i];
        }
        const double rel = norm > 0.0 ? sqrt(diff / norm) : sqrt(diff);
        if (rel > rtol || key_max > key_atol || !isfinite(rel)) {
            fprintf(stderr, "compare_gpt2: %s: relative difference %.3g (limit %.3g)%s\n", names[t],
                    rel, rtol, t == 5 ? ", key bias checked apart" : "");
            bad = 1;
        }
        if (t == 5 && key_max > key_atol) {
            fprintf(stderr, "compare_gpt2: qkvb keys: max |a - b| %.3g (limit %.3g)\n", key_max,
                    key_atol);
        }
        if (rel > worst) {
            worst = rel;
            worst_name = names[t];
        }
        at += counts[t];
    }
    if (at * 4 + HEADER_WORDS * 4 != na) {
        fprintf(stderr, "compare_gpt2: %ld bytes, but the header describes %ld\n", na,
                at * 4 + HEADER_WORDS * 4);
        bad = 1;
    }
    printf("compare_gpt2: %ld parameters; worst tensor %s, relative difference %.3g (limit "
           "%.3g)\n",
           at, worst_name, worst, rtol);
    free(a);
    free(b);
    return bad;
}
