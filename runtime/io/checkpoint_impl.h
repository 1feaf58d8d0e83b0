/* What the pieces of the checkpoint code share. This header is not
 * installed, and only runtime/io/checkpoint_*.c include it. The file format
 * itself (the magic, the layout of the header and of the sections) is known
 * to checkpoint_format.c alone (checkpoint_file.h gives the version's
 * number, and each reader the sections of each version): the writer asks it to
 * encode a header or a section's header, and the loader asks it to check
 * and decode a whole file held in memory. checkpoint_save.c writes a
 * checkpoint; checkpoint_load.c finds the newest valid one and loads it.
 * checkpoint.h describes the format in full, and checkpoint_file.h holds
 * the pieces that other kinds of checkpoint share (the kinds, the sections'
 * ids, the reader, the one-file save and the finder). */
#ifndef BL_CHECKPOINT_IMPL_H
#define BL_CHECKPOINT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "checkpoint_file.h"

/* The largest manifest, in bytes. A manifest is small: a few words per
 * layer, stage and pipeline, and the policies' state, which is kept under
 * half of it (BL_CKPT_CONTROL_MAX) so that every manifest written can be
 * read back. */
#define BL_CKPT_MANIFEST_MAX (2 * BL_CKPT_CONTROL_MAX)

/* Sets [*first, *first + *count) to the parameter range of the layers
 * [lo, hi) of m, with lo < hi: what a stage file of those layers holds. */
static inline void bl_ckpt_param_range(const bl_model_t *m, int lo, int hi, size_t *first,
                                       size_t *count)
{
    const bl_layer_t *a = &m->layers[lo], *b = &m->layers[hi - 1];
    *first = a->param_offset;
    *count = b->param_offset + b->param_count - a->param_offset;
}

/* ---- checkpoint_format.c --------------------------------------------- */

/* Encodes into s the header of section `id`, whose payload is the `nbytes`
 * bytes at `bytes`: the id, the payload's CRC32 and its length. The payload
 * follows the header in the file. */
void bl_ckpt_put_section(unsigned char s[BL_CKPT_SECTION_BYTES], uint32_t id, const void *bytes,
                         size_t nbytes);

/* Checks the manifest `name` held in bytes[0, len) against m. Returns
 * BL_OK, BL_ERR_FORMAT or BL_ERR_MISMATCH naming the file and the field, or
 * BL_ERR_NO_MEM. With s not NULL it also fills *s, whose arrays are
 * allocated with the runtime's allocator (free them with
 * bl_ckpt_state_free); *s is untouched on failure. It never reads outside
 * bytes[0, len). */
bl_status_t bl_ckpt_parse_manifest(bl_runtime_t *rt, const char *name, const unsigned char *bytes,
                                   size_t len, const bl_model_t *m, bl_ckpt_state_t *s);

/* A window of the model's parameters, [first, first + count), and the
 * arrays of `count` floats that receive its parameters and momentum from the
 * stage files that overlap it. */
typedef struct bl_ckpt_window {
    size_t first, count;
    float *params, *momentum;
} bl_ckpt_window_t;

/* Checks the stage file `name` held in bytes[0, len) against m. Returns
 * BL_OK, or BL_ERR_FORMAT naming the file and the field. Its range must be
 * the layers [lo, hi) when lo >= 0, else any whole layers of m. With w not
 * NULL, the part of its parameters and momentum that lies in w's window is
 * copied to its place in w's arrays, even when a later check fails. It never
 * reads outside bytes[0, len). */
bl_status_t bl_ckpt_parse_stage(bl_runtime_t *rt, const char *name, const unsigned char *bytes,
                                size_t len, const bl_model_t *m, int lo, int hi,
                                const bl_ckpt_window_t *w);

/* ---- checkpoint_save.c ----------------------------------------------- */

/* Removes a directory and the files in it (checkpoints hold no deeper
 * levels). Errors are ignored. */
void bl_ckpt_remove_tree(const char *dir);

/* ---- checkpoint_load.c ----------------------------------------------- */

/* Returns the steps of the complete checkpoints (the ckpt-<step>
 * directories) in dir, newest first, in an array from the runtime's
 * allocator that the caller frees, and sets *count to their number. Returns
 * NULL with *count = 0 when there are none or memory is short. */
long *bl_ckpt_list(bl_runtime_t *rt, const char *dir, int *count);

#endif /* BL_CHECKPOINT_IMPL_H */
