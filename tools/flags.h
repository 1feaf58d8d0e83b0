/* What the programs (ballast-train, ballast-sim) share to read their flags:
 * getopt_long with errors worded here, and strict values — a value must be
 * the number alone, whole, finite and in range, or the message names the
 * flag and what is wrong. Every function returns 0, or -1 with a one-line
 * message in err. */
#ifndef BL_FLAGS_H
#define BL_FLAGS_H

#include <getopt.h>
#include <stddef.h>

int flags_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A decimal integer in [lo, hi]. */
int flags_long(const char *flag, const char *text, long lo, long hi, long *out, char *err,
               size_t errlen);
int flags_int(const char *flag, const char *text, int lo, int hi, int *out, char *err,
              size_t errlen);
/* A finite number in [lo, hi], or [lo, hi) when hi_open. */
int flags_double(const char *flag, const char *text, double lo, double hi, int hi_open, double *out,
                 char *err, size_t errlen);

/* A size in bytes, >= 1: a decimal number alone (bytes) or followed by K,
 * M, G, T or KiB, MiB, GiB, TiB (binary multiples: K = KiB = 1024). */
int flags_bytes(const char *flag, const char *text, double *out, char *err, size_t errlen);

/* Iterates getopt_long over long options only, whose vals are first_val,
 * first_val + 1, ... in table order. Call flags_begin once, then
 * flags_next until it returns -1 (done) or -2 (an unknown option or a
 * missing value: err says which). Otherwise it returns the option's val and
 * writes "--name" into flag (flag_len bytes); the value is in optarg. After
 * the last option, a stray positional argument is an error (-2). */
void flags_begin(void);
int flags_next(int argc, char **argv, const struct option *options, int first_val, char *flag,
               size_t flag_len, char *err, size_t errlen);

#endif /* BL_FLAGS_H */
