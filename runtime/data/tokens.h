/* Token files in llm.c's format, which llm.c's data scripts and PyTorch
 * code read and write, and a byte-level tokenizer that makes them from plain
 * text. This module only parses and writes files and makes no MPI call.
 *
 * The layout is a header of 256 little-endian int32 words (word 0 the magic
 * 20240520, word 1 the version 1, word 2 the token count N, the rest zero),
 * then N little-endian uint16 tokens, and nothing after them. */
#ifndef BL_TOKENS_H
#define BL_TOKENS_H

#include <stdint.h>

#include "internal.h"

#define BL_TOKENS_MAGIC        20240520
#define BL_TOKENS_VERSION      1
#define BL_TOKENS_HEADER_WORDS 256
#define BL_TOKENS_BYTE_VOCAB   256 /* the byte-level tokenizer's vocabulary */

typedef struct bl_tokens {
    long count;       /* the tokens, N (1 .. INT32_MAX) */
    uint16_t *tokens; /* count tokens, in host byte order */
    int vocab;        /* the vocab argument, 256 for bytes, or max token + 1 */
} bl_tokens_t;

/* Reads the token file path into *out and checks it. Returns BL_OK; on
 * failure it returns BL_ERR_IO (cannot open or read), BL_ERR_FORMAT
 * (malformed), BL_ERR_NO_MEM or BL_ERR_INVALID_ARG (a NULL path or out,
 * vocab < 0), with err->msg naming the file and the field, and leaves *out
 * zeroed. On success the caller frees *out with bl_tokens_free and the same
 * a. The checks cover the magic, the version, a token count above 0, a file
 * length of exactly 1024 + 2N bytes (no short data, no trailing bytes) and,
 * when vocab > 0, every token being below vocab (the message names the
 * token's position and value). With vocab 0, out->vocab is the largest token
 * + 1. The header words 3..255 are not checked. The buffer grows as tokens
 * are actually read (from the file's length or 64 KiB, doubling, capped at
 * the declared size), so a short file that declares billions of tokens never
 * gets them allocated. */
bl_status_t bl_tokens_load(const char *path, int vocab, const bl_allocator_t *a, bl_error_t *err,
                           bl_tokens_t *out);

/* Writes count tokens (1 .. INT32_MAX) to path in the layout above, header
 * words 3..255 zero as llm.c writes them. The file is written and synced
 * under a temporary name in the same directory and then renamed over path,
 * so on failure an existing file at path is left as it was. Returns BL_OK,
 * or BL_ERR_INVALID_ARG (NULL arguments, count out of range) or BL_ERR_IO,
 * with err->msg naming the file. It allocates nothing. */
bl_status_t bl_tokens_write(const char *path, const uint16_t *tokens, long count, bl_error_t *err);

/* Tokenizes the plain text file path byte by byte: token i is byte i, and
 * out->vocab is 256. Returns BL_OK, or BL_ERR_IO, BL_ERR_NO_MEM,
 * BL_ERR_INVALID_ARG (NULL arguments) or BL_ERR_FORMAT (an empty file, or one
 * over INT32_MAX bytes, more than a token file holds), with err->msg naming
 * the file, and leaves *out zeroed on failure. The caller frees *out with
 * bl_tokens_free and the same a. */
bl_status_t bl_tokens_from_bytes(const char *path, const bl_allocator_t *a, bl_error_t *err,
                                 bl_tokens_t *out);

/* Frees the tokens of t and zeroes it; NULL is a no-op. */
void bl_tokens_free(bl_tokens_t *t, const bl_allocator_t *a);

#endif /* BL_TOKENS_H */
