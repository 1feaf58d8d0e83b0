/* GPT-2 checkpoints in llm.c's float32 format (version 3), which llm.c's
 * train_gpt2.py writes from PyTorch and its C trainer reads. This module
 * only parses and writes files and makes no MPI call.
 *
 * The layout is a header of 256 little-endian int32 words: word 0 the magic
 * 20240326, word 1 the version 3, words 2..7 maxT, V, L, NH, C and Vp (the
 * config below), the rest zero as llm.c writes them. The parameters follow
 * as little-endian float32 tensors, in the order and with the counts of
 * bl_gpt2_tensors, and nothing after them. */
#ifndef BL_GPT2_FILE_H
#define BL_GPT2_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

#define BL_GPT2_MAGIC         20240326
#define BL_GPT2_VERSION       3 /* float32; llm.c's version 5 is bfloat16 */
#define BL_GPT2_HEADER_WORDS  256
#define BL_GPT2_HEADER_CONFIG 8 /* the words before the rest of the header */
#define BL_GPT2_TENSOR_COUNT  16

/* The model's shape is bl_gpt2_config_t (ballast.h), in the header's order
 * (words 2..7). */

/* GPT-2 small (124M parameters), as llm.c exports it. */
#define BL_GPT2_CONFIG_124M                                                                        \
    {                                                                                              \
        .max_seq_len = 1024, .vocab_size = 50257, .num_layers = 12, .num_heads = 12,               \
        .channels = 768, .padded_vocab_size = 50304                                                \
    }

/* One tensor of the parameter array. A tensor with layers == L holds L
 * equal slices, layer l's at offset + l · (count / L); the others (wte, wpe,
 * lnfw, lnfb) have layers == 1. */
typedef struct bl_gpt2_tensor {
    const char *name; /* llm.c's name, "wte" .. "lnfb"; static storage */
    size_t offset;    /* in floats from the start of the parameters */
    size_t count;     /* in floats */
    int layers;       /* L for the per-layer tensors, 1 for the others */
} bl_gpt2_tensor_t;

/* A loaded checkpoint. A caller that writes its own parameters fills config
 * and params and zeroes the rest. */
typedef struct bl_gpt2_file {
    bl_gpt2_config_t config;
    size_t param_count; /* the sum of the tensors' counts */
    float *params;      /* param_count floats, the tensors in file order */
    /* The header words 8..255 as read (zero in llm.c's files), which
     * bl_gpt2_write puts back so that a loaded file is rewritten byte for
     * byte. */
    uint32_t header_rest[BL_GPT2_HEADER_WORDS - BL_GPT2_HEADER_CONFIG];
} bl_gpt2_file_t;

/* Checks cfg and fills tensors (BL_GPT2_TENSOR_COUNT entries) with each
 * tensor's name, offset and count, in file order, and *param_count (which
 * may be NULL) with the total. Returns BL_OK, or BL_ERR_INVALID_ARG (NULL
 * cfg or tensors) or BL_ERR_FORMAT naming the field: a count that is not
 * positive, NH not dividing C, Vp < V, or sizes that overflow (a tensor's
 * count, the total, or the file's bytes beyond SIZE_MAX or INT64_MAX). */
bl_status_t bl_gpt2_tensors(const bl_gpt2_config_t *cfg, bl_gpt2_tensor_t *tensors,
                            size_t *param_count, bl_error_t *err);

/* Reads the checkpoint path into *out and checks it. Returns BL_OK; on
 * failure it returns BL_ERR_IO (cannot open or read), BL_ERR_FORMAT
 * (malformed), BL_ERR_NO_MEM or BL_ERR_INVALID_ARG (NULL path or out), with
 * err->msg naming the file and the field, and leaves *out zeroed. On success
 * the caller frees *out with bl_gpt2_free and the same a. The checks cover
 * the magic, the version (5, llm.c's bfloat16, is refused with its own
 * message), the config as bl_gpt2_tensors checks it, and a file length of
 * exactly the header and the parameters (no short data, no trailing bytes).
 * The values are not checked (NaN and infinities load as they are). The
 * buffer grows as parameters are actually read (from the file's length or
 * 64 KiB, doubling, capped at the declared size), so a short file that
 * declares gigabytes never gets them allocated. */
bl_status_t bl_gpt2_load(const char *path, const bl_allocator_t *a, bl_error_t *err,
                         bl_gpt2_file_t *out);

/* Writes m to path as version 3. The file is written and synced under a
 * temporary name in the same directory and then renamed over path, so on
 * failure an existing file at path is left as it was. Returns BL_OK,
 * BL_ERR_FORMAT (a bad config, named as bl_gpt2_tensors names it),
 * BL_ERR_INVALID_ARG (NULL arguments, m->param_count not the config's) or
 * BL_ERR_IO, with err->msg naming the file. It allocates nothing. */
bl_status_t bl_gpt2_write(const char *path, const bl_gpt2_file_t *m, bl_error_t *err);

/* The bytes of the header, before the first parameter. */
#define BL_GPT2_HEADER_BYTES (4 * BL_GPT2_HEADER_WORDS)

/* Writes into header (BL_GPT2_HEADER_BYTES bytes) the header that
 * bl_gpt2_write writes for config cfg with header_rest zero, and sets
 * *param_count (which may be NULL) to the config's parameters. Parameter i
 * of such a file lies at byte BL_GPT2_HEADER_BYTES + 4 · i, little-endian
 * float32, so writers that write the parameters in parts at their offsets
 * (pipeline stages) make bl_gpt2_write's bytes. Returns BL_OK, or
 * BL_ERR_INVALID_ARG (NULL cfg or header) or BL_ERR_FORMAT (a bad config,
 * named as bl_gpt2_tensors names it). */
bl_status_t bl_gpt2_header(const bl_gpt2_config_t *cfg, unsigned char *header, size_t *param_count,
                           bl_error_t *err);

/* Checks a requested sequence length T against the checkpoint's maxT.
 * Returns BL_OK when 0 < T <= cfg->max_seq_len, and otherwise
 * BL_ERR_INVALID_ARG with err->msg naming path and both numbers. */
bl_status_t bl_gpt2_check_seq_len(const char *path, const bl_gpt2_config_t *cfg, int T,
                                  bl_error_t *err);

/* Reads the header of the checkpoint path into *out and checks it as
 * bl_gpt2_load does (the file's length included), without reading the
 * parameters: out->params stays NULL. A pipeline stage then reads its part
 * with bl_gpt2_read_part. Returns as bl_gpt2_load. */
bl_status_t bl_gpt2_load_shape(const char *path, bl_error_t *err, bl_gpt2_file_t *out);

/* Reads parameters [first, first + count) of the checkpoint path (checked
 * by bl_gpt2_load_shape) into dst (count floats). Returns BL_OK, or BL_ERR_IO
 * naming the file (it cannot be read, or it is shorter than it was). */
bl_status_t bl_gpt2_read_part(const char *path, size_t first, size_t count, float *dst,
                              bl_error_t *err);

/* Sets *crc to the CRC-32 of the whole file at path, read in pieces (a
 * pipeline's stages, which each read their part of it, compare it so that
 * they start from the same file). Returns BL_OK or BL_ERR_IO naming the
 * file. */
bl_status_t bl_gpt2_file_crc(const char *path, uint32_t *crc, bl_error_t *err);

/* Frees the parameters of m and zeroes it; NULL is a no-op. */
void bl_gpt2_free(bl_gpt2_file_t *m, const bl_allocator_t *a);

#endif /* BL_GPT2_FILE_H */
