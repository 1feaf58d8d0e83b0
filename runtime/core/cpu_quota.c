/* The CPU quota of this process's cgroup (cpu_quota.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_quota.h"

/* A whole number of microseconds: 1 with *out, else 0. */
static int microseconds(const char *text, long long *out)
{
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (end == text) {
        return 0;
    }
    while (*end == ' ' || *end == '\n') {
        end++;
    }
    *out = v;
    return *end == '\0';
}

int bl_cpu_quota_parse_max(const char *text, double *cores)
{
    char quota[32] = "", period[32] = "";
    if (sscanf(text, "%31s %31s", quota, period) != 2) {
        return -1;
    }
    long long p = 0, q = 0;
    if (!microseconds(period, &p) || p <= 0) {
        return -1;
    }
    if (strcmp(quota, "max") == 0) {
        return 0;
    }
    if (!microseconds(quota, &q) || q <= 0) {
        return -1;
    }
    *cores = (double)q / (double)p;
    return 1;
}

int bl_cpu_quota_parse_v1(const char *quota, const char *period, double *cores)
{
    long long q = 0, p = 0;
    if (!microseconds(quota, &q) || !microseconds(period, &p) || p <= 0) {
        return -1;
    }
    if (q < 0) {
        return 0; /* -1: no limit */
    }
    if (q == 0) {
        return -1;
    }
    *cores = (double)q / (double)p;
    return 1;
}

/* The first line of the file at path into buf: 1, or 0 when it cannot be
 * read. */
static int read_line(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    int ok = fgets(buf, (int)n, f) != NULL;
    fclose(f);
    return ok;
}

/* Whether the comma-separated controller list `list` (len bytes) holds
 * "cpu". */
static int lists_cpu(const char *list, size_t len)
{
    for (size_t at = 0; at < len;) {
        size_t k = at;
        while (k < len && list[k] != ',') {
            k++;
        }
        if (k - at == 3 && strncmp(list + at, "cpu", 3) == 0) {
            return 1;
        }
        at = k + 1;
    }
    return 0;
}

/* The quota of one /proc/self/cgroup line ("ID:CONTROLLERS:PATH", no
 * newline) under root: > 0, or 0 for none. */
static double line_quota(const char *root, const char *line, char *source, size_t n)
{
    const char *c1 = strchr(line, ':');
    const char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
    if (c2 == NULL) {
        return 0.0;
    }
    const char *path = c2 + 1;
    char file[640], text[64], period[64];
    double cores = 0.0;
    if (strncmp(line, "0::", 3) == 0) {
        snprintf(file, sizeof file, "%s%s/cpu.max", root, path);
        if (read_line(file, text, sizeof text) && bl_cpu_quota_parse_max(text, &cores) == 1) {
            snprintf(source, n, "%s", file);
            return cores;
        }
        return 0.0;
    }
    if (!lists_cpu(c1 + 1, (size_t)(c2 - c1 - 1))) {
        return 0.0;
    }
    static const char *const mounts[] = {"cpu", "cpu,cpuacct", "cpuacct,cpu"};
    for (size_t i = 0; i < sizeof mounts / sizeof mounts[0]; i++) {
        char dir[600];
        snprintf(dir, sizeof dir, "%s/%s%s", root, mounts[i], strcmp(path, "/") == 0 ? "" : path);
        snprintf(file, sizeof file, "%s/cpu.cfs_quota_us", dir);
        if (!read_line(file, text, sizeof text)) {
            continue;
        }
        snprintf(file, sizeof file, "%s/cpu.cfs_period_us", dir);
        if (read_line(file, period, sizeof period) &&
            bl_cpu_quota_parse_v1(text, period, &cores) == 1) {
            snprintf(source, n, "%s/cpu.cfs_quota_us", dir);
            return cores;
        }
        return 0.0;
    }
    return 0.0;
}

double bl_cpu_quota_find(const char *root, const char *proc_cgroup, char *source, size_t n)
{
    char scratch[8];
    if (source == NULL || n == 0) {
        source = scratch;
        n = sizeof scratch;
    }
    source[0] = '\0';
    for (const char *at = proc_cgroup; at != NULL && *at != '\0';) {
        const char *end = strchr(at, '\n');
        size_t len = end != NULL ? (size_t)(end - at) : strlen(at);
        char line[512];
        if (len < sizeof line) {
            memcpy(line, at, len);
            line[len] = '\0';
            double cores = line_quota(root, line, source, n);
            if (cores > 0.0) {
                return cores;
            }
        }
        at = end != NULL ? end + 1 : NULL;
    }
    return 0.0;
}

double bl_cpu_quota_cores(char *source, size_t n)
{
    char text[4096];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f == NULL) {
        return 0.0;
    }
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    return bl_cpu_quota_find("/sys/fs/cgroup", text, source, n);
}
