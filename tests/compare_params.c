/* compare_params A B [RTOL [ATOL]]: compares two parameter files (raw
 * little-endian float32) element by element: |a - b| <= ATOL + RTOL·|b|
 * (defaults 1e-5 and 1e-6: ATOL covers parameters near zero, where a
 * relative error means nothing). Prints the worst element; exits 0 when all
 * are within, 1 otherwise (or when the files differ in length or cannot be
 * read). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* The whole file as floats; NULL on failure (message printed). */
static float *read_floats(const char *path, long *count)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "compare_params: cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long nbytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *v = nbytes > 0 && nbytes % 4 == 0 ? malloc((size_t)nbytes) : NULL;
    if (v == NULL || fread(v, 1, (size_t)nbytes, f) != (size_t)nbytes) {
        fprintf(stderr, "compare_params: %s: empty, unreadable or not float32 (%ld bytes)\n", path,
                nbytes);
        free(v);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *count = nbytes / 4;
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: compare_params A B [RTOL [ATOL]]\n");
        return 2;
    }
    double rtol = argc > 3 ? atof(argv[3]) : 1e-5;
    double atol = argc > 4 ? atof(argv[4]) : 1e-6;
    long na = 0, nb = 0;
    float *a = read_floats(argv[1], &na);
    float *b = read_floats(argv[2], &nb);
    int status = 1;
    if (a != NULL && b != NULL) {
        if (na != nb) {
            fprintf(stderr, "compare_params: %s has %ld parameters, %s has %ld\n", argv[1], na,
                    argv[2], nb);
        } else {
            long worst = 0, bad = 0;
            double worst_excess = -INFINITY;
            for (long i = 0; i < na; i++) {
                double diff = fabs((double)a[i] - (double)b[i]);
                double excess = diff - (atol + rtol * fabs((double)b[i]));
                if (!(excess <= 0.0)) {
                    bad++;
                }
                if (excess > worst_excess || isnan(excess)) {
                    worst_excess = isnan(excess) ? INFINITY : excess;
                    worst = i;
                }
            }
            printf("compare_params: %ld parameters, %ld outside |a-b| <= %g + %g|b|; worst "
                   "element %ld: %.9g vs %.9g\n",
                   na, bad, atol, rtol, worst, (double)a[worst], (double)b[worst]);
            status = bad == 0 ? 0 : 1;
        }
    }
    free(a);
    free(b);
    return status;
}
