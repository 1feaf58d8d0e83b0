/* Strict flag parsing shared by the programs. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"

int flags_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* strtol and strtod skip blanks and take a '+': a value is the number alone. */
static int starts_badly(const char *text)
{
    return text[0] == '\0' || text[0] == ' ' || text[0] == '\t' || text[0] == '+';
}

int flags_long(const char *flag, const char *text, long lo, long hi, long *out, char *err,
               size_t errlen)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (starts_badly(text) || *end != '\0' || errno == ERANGE) {
        return flags_fail(err, errlen, "%s: '%s' is not an integer", flag, text);
    }
    if (v < lo || v > hi) {
        return flags_fail(err, errlen, "%s: %ld is outside [%ld, %ld]", flag, v, lo, hi);
    }
    *out = v;
    return 0;
}

int flags_int(const char *flag, const char *text, int lo, int hi, int *out, char *err,
              size_t errlen)
{
    long v = 0;
    if (flags_long(flag, text, lo, hi, &v, err, errlen) != 0) {
        return -1;
    }
    *out = (int)v;
    return 0;
}

int flags_double(const char *flag, const char *text, double lo, double hi, int hi_open, double *out,
                 char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (starts_badly(text) || *end != '\0' || errno == ERANGE || !isfinite(v)) {
        return flags_fail(err, errlen, "%s: '%s' is not a finite number", flag, text);
    }
    if (v < lo || v > hi || (hi_open && v == hi)) {
        return flags_fail(err, errlen, "%s: %g is outside [%g, %g%s", flag, v, lo, hi,
                          hi_open ? ")" : "]");
    }
    *out = v;
    return 0;
}

int flags_bytes(const char *flag, const char *text, double *out, char *err, size_t errlen)
{
    /* Binary multiples: K and KiB are both 1024 bytes, and so on. */
    static const struct {
        const char *suffix;
        double scale;
    } units[] = {{"", 1.0},
                 {"K", 1024.0},
                 {"KiB", 1024.0},
                 {"M", 1048576.0},
                 {"MiB", 1048576.0},
                 {"G", 1073741824.0},
                 {"GiB", 1073741824.0},
                 {"T", 1099511627776.0},
                 {"TiB", 1099511627776.0}};
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    int known = 0;
    double scale = 1.0;
    for (size_t k = 0; k < sizeof units / sizeof units[0] && end != text; k++) {
        if (strcmp(end, units[k].suffix) == 0) {
            known = 1;
            scale = units[k].scale;
        }
    }
    /* strtod also reads hexadecimal, "inf" and "nan": a size is decimal. */
    int decimal = text[0] >= '0' && text[0] <= '9' && strpbrk(text, "xXpP") == NULL;
    if (starts_badly(text) || end == text || !known || !decimal || errno == ERANGE ||
        !isfinite(v)) {
        return flags_fail(err, errlen,
                          "%s: '%s' is not a size (bytes, or a number with K, M, G, T or KiB, "
                          "MiB, GiB, TiB)",
                          flag, text);
    }
    v *= scale;
    if (!(v >= 1.0) || !isfinite(v)) {
        return flags_fail(err, errlen, "%s: '%s' must be at least 1 byte", flag, text);
    }
    *out = v;
    return 0;
}

void flags_begin(void)
{
    optind = 0; /* glibc: 0 re-initialises getopt, so a parser can run more than once */
    opterr = 0; /* errors are ours to word */
}

int flags_next(int argc, char **argv, const struct option *options, int first_val, char *flag,
               size_t flag_len, char *err, size_t errlen)
{
    int index = -1;
    int opt = getopt_long(argc, argv, "", options, &index);
    if (opt == -1) {
        if (optind < argc) {
            flags_fail(err, errlen, "unexpected argument '%s' (options start with --)",
                       argv[optind]);
            return -2;
        }
        return -1;
    }
    if (opt == '?' || opt == ':') {
        if (optopt > 0 && optopt < first_val) {
            /* a short option: getopt may have stopped inside a word */
            flags_fail(err, errlen, "unknown option '-%c' (see --help)", optopt);
        } else if (optopt >= first_val &&
                   options[optopt - first_val].has_arg == required_argument) {
            flags_fail(err, errlen, "%s: needs a value (see --help)", argv[optind - 1]);
        } else {
            flags_fail(err, errlen, "unknown option '%s' (see --help)", argv[optind - 1]);
        }
        return -2;
    }
    snprintf(flag, flag_len, "--%s", options[index].name);
    return opt;
}
