/* The checkpoint file format's pieces that every kind of checkpoint shares
 * (checkpoint.h describes the format): the kinds of file and the sections'
 * ids, a reader that checks a file's header and sections held in memory, a
 * save that commits a checkpoint directory of one file atomically and prunes
 * the old ones, and a finder that takes the newest checkpoint that a caller's
 * check accepts. The layer trainer's checkpoints (checkpoint.h) are built on
 * the same pieces; the language-model trainer's (runtime/lm/lm_checkpoint.c)
 * use them directly. */
#ifndef BL_CHECKPOINT_FILE_H
#define BL_CHECKPOINT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime_impl.h"

/* The sizes of a file's header and of a section's header, in bytes. */
#define BL_CKPT_HEADER_BYTES  32u
#define BL_CKPT_SECTION_BYTES 16u

/* The format's version, which a save writes; a load reads every version from
 * 1 on. Version 2 added the manifest's CONTROL section, and version 3 the
 * language model's STAGES section (checkpoint.h). Each reader says how many
 * sections its kind of file holds in each version (bl_ckpt_read_header). */
#define BL_CKPT_VERSION 3u

/* A file's kind, in its header: the layer trainer's manifest and stage
 * files, and the language-model trainer's one state file. A reader that
 * finds another trainer's kind says so (BL_ERR_MISMATCH). */
#define BL_CKPT_KIND_MANIFEST 1u
#define BL_CKPT_KIND_STAGE    2u
#define BL_CKPT_KIND_LM       3u

/* The largest policies' state (a CONTROL section) that a save writes, in
 * bytes; a larger one is left out with a warning. */
#define BL_CKPT_CONTROL_MAX (1u << 23)

/* The files' names inside a checkpoint directory. */
#define BL_CKPT_MANIFEST_FILE "manifest.bin"
#define BL_CKPT_LM_FILE       "lm.bin"

/* The sections' ids. Each kind of file holds its own sections in a fixed
 * order (checkpoint.h). */
enum {
    BL_CKPT_SEC_MODEL = 1,
    BL_CKPT_SEC_STATE = 2,
    BL_CKPT_SEC_LAYOUT = 3,
    BL_CKPT_SEC_RANGE = 4,
    BL_CKPT_SEC_PARAMS = 5,
    BL_CKPT_SEC_MOMENTUM = 6,
    BL_CKPT_SEC_CONTROL = 7,
    BL_CKPT_SEC_GPT2 = 8,
    BL_CKPT_SEC_LM_STATE = 9,
    BL_CKPT_SEC_SHARDS = 10,
    BL_CKPT_SEC_ADAM_M = 11,
    BL_CKPT_SEC_ADAM_V = 12,
    BL_CKPT_SEC_STAGES = 13,
    BL_CKPT_SEC_LAYERS = 14,
    BL_CKPT_SEC_COUNT
};

/* ---- Reading (checkpoint_format.c) ------------------------------------ */

/* A file held in memory, read front to back. Fill rt, name, bytes and len
 * and zero the rest; name names the file in messages. */
typedef struct bl_ckpt_reader {
    bl_runtime_t *rt;
    const char *name;
    const unsigned char *bytes;
    size_t len, pos;
    uint32_t version; /* the file's version, once its header is read */
} bl_ckpt_reader_t;

/* Reads and checks the header of a file of `kind`, which in version v of the
 * format holds sections[v - 1] sections (0: the format had no such file in
 * that version); r->version then says which version the file is, so that
 * the caller reads the sections that version holds. Returns BL_OK,
 * BL_ERR_FORMAT, or BL_ERR_MISMATCH for a file of the other trainer (the
 * message names both kinds). */
bl_status_t bl_ckpt_read_header(bl_ckpt_reader_t *r, uint32_t kind,
                                const uint32_t sections[BL_CKPT_VERSION]);

/* Reads the next section, which must be section `id` of `want` bytes (0
 * allows any length up to what is left), and checks its checksum. On
 * success *out points at its payload (inside r->bytes, at any alignment) of
 * *len bytes. Returns BL_OK or BL_ERR_FORMAT naming the section. */
bl_status_t bl_ckpt_read_section(bl_ckpt_reader_t *r, uint32_t id, size_t want,
                                 const unsigned char **out, size_t *len);

/* Returns BL_OK when the file ends after its last section, else
 * BL_ERR_FORMAT. */
bl_status_t bl_ckpt_read_end(const bl_ckpt_reader_t *r);

/* Reads a stage map of stages + 1 entries (u32 each, little-endian) at p,
 * inside a section that r has read, over `units` units (`unit` names one in
 * messages: the layer trainer's layers, the language model's pipeline
 * units). A map starts at unit 0, rises strictly (every stage holds at
 * least one unit) and ends at `units`, so the first unit lies on the first
 * stage and the last unit on the last. The entries go into first (stages +
 * 1 ints) when it is not NULL. Returns BL_OK, or BL_ERR_FORMAT naming the
 * section, the entry and the rule it breaks. Needs 1 <= stages <= units. */
bl_status_t bl_ckpt_read_map(const bl_ckpt_reader_t *r, const char *section, const unsigned char *p,
                             uint32_t stages, uint32_t units, const char *unit, int *first);

/* Records a malformed file on the runtime, with the message "checkpoint
 * file NAME: <what is wrong>", and returns BL_ERR_FORMAT. */
bl_status_t bl_ckpt_bad(const bl_ckpt_reader_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- Files and directories (checkpoint_load.c) ------------------------ */

/* Reads the whole file path of at most `max` bytes into *out, a buffer from
 * the runtime's allocator that the caller frees, and sets *len to its
 * length. Returns BL_OK; BL_ERR_IO when the file cannot be opened or read;
 * BL_ERR_FORMAT when it is larger than max; or BL_ERR_NO_MEM. On failure
 * *out is NULL. Local. */
bl_status_t bl_ckpt_read_whole(bl_runtime_t *rt, const char *path, size_t max, unsigned char **out,
                               size_t *len);

/* Decides whether the checkpoint directory path can be resumed from:
 * BL_OK takes it; any other status (with its message on the runtime)
 * refuses it. Called on rank 0 only. */
typedef bl_status_t (*bl_ckpt_check_fn)(bl_runtime_t *rt, const char *path, void *arg);

/* Finds the newest checkpoint in dir that check accepts. Collective over
 * rt: rank 0 first removes the leftover temporary directories of saves that
 * died, then tries the checkpoints newest first and warns about each one
 * that check refuses, with the reason; every rank gets the checkpoint's
 * directory in path (n bytes) and *found = 1, or *found = 0 when there is
 * none. With mismatch_stops, a refusal with BL_ERR_MISMATCH (a checkpoint
 * of another run, not a damaged one) ends the search instead, and every
 * rank returns BL_ERR_MISMATCH with rank 0's message. Otherwise returns
 * BL_OK, the status of a failed broadcast, or BL_ERR_INVALID_ARG when the
 * path does not fit in path. */
bl_status_t bl_ckpt_find_valid(bl_runtime_t *rt, const char *dir, bl_ckpt_check_fn check, void *arg,
                               int mismatch_stops, char *path, size_t n, int *found);

/* ---- Resuming (checkpoint_load.c) ------------------------------------- */

/* On resume (either trainer): takes the stage map `saved` (saved_stages + 1
 * entries, checked by bl_ckpt_read_map) of the checkpoint `path` into this
 * run's map `first` (stages + 1 entries) when both have the same number of
 * stages, so that a resumed pipeline goes on with the map it had: the run
 * then continues as if never stopped, whatever map the config gives. When
 * the maps differ, one info line names the checkpoint and both maps, with
 * `mine` saying where this run's map came from ("configured", "balanced").
 * With another number of stages the run keeps its map, and an info line
 * says so; with no saved map (saved NULL: a checkpoint written before maps
 * were saved) it keeps its map too, with an info line when it has more than
 * one stage. Returns 1 when first changed, else 0. Local: every rank reads
 * the same checkpoint and decides the same. */
int bl_ckpt_adopt_map(bl_runtime_t *rt, const char *path, const int *saved, int saved_stages,
                      int *first, int stages, const char *mine);

/* ---- Writing (checkpoint_save.c) -------------------------------------- */

/* One section to write: its id and payload. */
typedef struct bl_ckpt_section {
    uint32_t id;
    const void *bytes;
    size_t nbytes;
} bl_ckpt_section_t;

/* Saves a checkpoint of one file: rank 0 writes the file `name` of `kind`
 * with the `count` sections given into a temporary directory beside the
 * checkpoints in dir (which is created if it is missing), fsyncs it,
 * renames the directory into place as dir/ckpt-<step> and fsyncs dir, then
 * keeps the newest `keep` checkpoints (0 keeps all). Only rank 0 reads
 * sections. Collective over rt: every rank gets the checkpoint's directory
 * in path (n bytes) and the same status: BL_OK, BL_ERR_IO,
 * BL_ERR_INVALID_ARG (a path that is too long) or BL_ERR_UNSUPPORTED (a
 * big-endian host). A failure removes the temporary directory and leaves
 * the previous checkpoints as they were. */
bl_status_t bl_ckpt_save_file(bl_runtime_t *rt, const char *dir, long step, const char *name,
                              uint32_t kind, const bl_ckpt_section_t *sections, int count, int keep,
                              char *path, size_t n);

#endif /* BL_CHECKPOINT_FILE_H */
