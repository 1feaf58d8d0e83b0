/* Whole-file reads and writes that the file formats share: a writer that
 * replaces a file so that its name never points at a partial one, and a
 * reader that does not trust a file's header for memory. The token files,
 * llm.c's GPT-2 checkpoints, the IDX files and the parameter files use
 * them. This header is not installed. */
#ifndef BL_FILE_IO_H
#define BL_FILE_IO_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "internal.h"

/* ---- Replacing a file -------------------------------------------------- */

/* Writes the contents of a file to f and returns 1, or returns 0 when a
 * write failed, with errno set by the failing call. ctx is the caller's. */
typedef int (*bl_file_write_fn)(FILE *f, const void *ctx);

/* The words of the writer's messages, so that each format keeps its own.
 * Only contents is required; a NULL field takes the default shown. */
typedef struct bl_file_words {
    /* What the file holds: "<path>: writing <contents> to <tmp> failed:
     * <cause>", e.g. "10 tokens". */
    const char *contents;
    /* The words around the temporary name when the rename fails:
     * "<path>: <rename_before> <tmp> <rename_after>: <cause>" (default:
     * "cannot rename" and "into place"). */
    const char *rename_before;
    const char *rename_after;
    /* What the file is once it is in place: "<path>: <done>, but syncing
     * its directory failed: <cause>" (default: "written"). */
    const char *done;
} bl_file_words_t;

/* Replaces the file at path with what fill puts into it, so that path
 * names either the old file or the whole new one, never a partial file.
 * Returns BL_OK, BL_ERR_INVALID_ARG (path is too long) or BL_ERR_IO, with
 * err (which may be NULL) naming path and saying why. path, words (with
 * its contents) and fill must not be NULL; fill gets ctx.
 *
 * The steps: fill writes a temporary file beside path that mkstemp names
 * "<path>.XXXXXX" (unique, so concurrent writers never share one, and in
 * the same directory, so that the rename is atomic), which is made 0644,
 * flushed and fsynced; it is then renamed over path, and path's directory
 * is fsynced so that the rename is durable. A failure before the rename
 * succeeds removes the temporary file and leaves path as it was; a failure
 * of the last sync leaves the new file in place and returns BL_ERR_IO. */
bl_status_t bl_file_replace(const char *path, const bl_file_words_t *words, bl_file_write_fn fill,
                            const void *ctx, bl_error_t *err);

/* ---- Reading a file whose header declares its length ------------------- */

/* The trailing bytes that a read counts before it stops: a count at this
 * limit means "at least" that many. */
#define BL_FILE_TRAILING_LIMIT (1024u * 1024u)

/* A source of bytes, such as a FILE or a gzip stream. read reads up to n
 * bytes into buf and sets *got to the count read, which is below n only at
 * the end of the source; it returns BL_OK, or the failure with err saying
 * why. */
typedef struct bl_byte_source {
    bl_status_t (*read)(const struct bl_byte_source *src, void *buf, size_t n, size_t *got,
                        bl_error_t *err);
    void *ctx;           /* the source's own state, for read */
    const char *path;    /* names the source in messages */
    size_t known_nbytes; /* the bytes the source is known to hold, or 0 when unknown */
} bl_byte_source_t;

/* What a read got: the bytes, which belong to the caller and are freed
 * with bl_mem_free through the same allocator, their count, and the bytes
 * that followed them, counted up to BL_FILE_TRAILING_LIMIT. */
typedef struct bl_file_body {
    unsigned char *bytes;
    size_t nbytes;   /* at most the want of the read; below it when the source ended early */
    size_t trailing; /* non-zero only when nbytes is the want */
} bl_file_body_t;

/* Reads up to want (> 0) bytes of src into a new buffer from a, and then
 * counts the bytes that follow them. A source shorter than want or one
 * with trailing bytes is not a failure here: the caller, which knows the
 * format, judges *out. Returns BL_OK, BL_ERR_NO_MEM ("<path>: cannot
 * allocate N bytes for <contents>", e.g. "the tokens") or the failure of
 * src->read, with err saying why; on failure out->bytes is NULL and
 * nothing is left allocated.
 *
 * The declared length want is not trusted for memory, because a file of a
 * few bytes can declare gigabytes. The buffer starts at src->known_nbytes plus
 * one (so that finding the end does not double it) when that is at least
 * 64 KiB, or else at 64 KiB, capped at want, and it doubles, capped at
 * want, only while it is full and more is wanted. A short or lying source
 * then fails after reading what it really holds, and the buffer never
 * exceeds twice the bytes read (or the first buffer). */
bl_status_t bl_file_read_body(const bl_byte_source_t *src, size_t want, const char *contents,
                              const bl_allocator_t *a, bl_error_t *err, bl_file_body_t *out);

/* bl_file_read_body over the rest of f, which path names: it reads with
 * fread (a read error is BL_ERR_IO, "<path>: cannot read: <cause>"), and
 * src->known_nbytes is what a regular file holds past f's position. */
bl_status_t bl_file_read_rest(FILE *f, const char *path, size_t want, const char *contents,
                              const bl_allocator_t *a, bl_error_t *err, bl_file_body_t *out);

/* Writes the nbytes at bytes to fd at offset (pwrite), looping over short
 * writes and interruptions. Returns 0, or the errno of the failure. */
int bl_file_pwrite(int fd, const void *bytes, size_t nbytes, off_t offset);

/* Writes count floats to fd at offset, little-endian: as they are on a
 * little-endian host, else through a swapped copy (the values are never
 * swapped in place, since they may be shared). Returns 0 or an errno. */
int bl_file_pwrite_floats(int fd, const float *values, size_t count, off_t offset);

#endif /* BL_FILE_IO_H */
