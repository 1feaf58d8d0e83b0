/* File helpers that the MPI tests of files written by the stages share
 * (test_params_file.c, test_lm_model_file.c): reading a file whole,
 * comparing two files, counting a save's leftover temporary files, a fresh
 * directory, and a file-size limit that makes a write fail. Header-only
 * (static functions); include mpi_check.h first, for check(). */
#ifndef BL_FILE_TEST_SUPPORT_H
#define BL_FILE_TEST_SUPPORT_H

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads the file at path whole into a new buffer (*nbytes its length);
 * NULL if it cannot. */
static unsigned char *read_whole(const char *path, long *nbytes)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    unsigned char *bytes = NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (*nbytes = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        bytes = malloc((size_t)*nbytes + 1);
        if (bytes != NULL && fread(bytes, 1, (size_t)*nbytes, f) != (size_t)*nbytes) {
            free(bytes);
            bytes = NULL;
        }
    }
    fclose(f);
    return bytes;
}

/* Whether the files a and b hold the same bytes, and (want >= 0) exactly
 * want of them. */
static int same_bytes(const char *a, const char *b, long want)
{
    long na = -1, nb = -2;
    unsigned char *x = read_whole(a, &na), *y = read_whole(b, &nb);
    int same = x != NULL && y != NULL && na == nb && (want < 0 || na == want) &&
               memcmp(x, y, (size_t)na) == 0;
    free(x);
    free(y);
    return same;
}

/* Counts the entries of dir whose names start with ".": the temporary files
 * of the saves (nothing else in dir starts so). */
static int hidden_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        n += e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }
    if (d != NULL) {
        closedir(d);
    }
    return n;
}

/* Empties dir (a previous run's files) or creates it, its parent too. Rank
 * 0 only. */
static void fresh_dir(const char *dir)
{
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        mkdir(parent, 0755);
    }
    mkdir(dir, 0755);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[4096 + 256];
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (unlink(path) != 0) {
                rmdir(path);
            }
        }
    }
    if (d != NULL) {
        closedir(d);
    }
}

/* Sets this process's file-size limit (RLIM_INFINITY: back to the most it
 * may), so that a write beyond nbytes fails (SIGXFSZ ignored: EFBIG). */
static void limit_file_size(rlim_t nbytes)
{
    struct rlimit lim;
    check(getrlimit(RLIMIT_FSIZE, &lim) == 0, "getrlimit");
    lim.rlim_cur = nbytes == RLIM_INFINITY || nbytes > lim.rlim_max ? lim.rlim_max : nbytes;
    check(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
}

#endif /* BL_FILE_TEST_SUPPORT_H */
