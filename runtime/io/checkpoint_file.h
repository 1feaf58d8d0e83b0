/* The checkpoint file format's pieces that every kind of checkpoint shares
 * (checkpoint.h describes the format): the kinds of file and the sections'
 * ids, a reader that checks a file's header and sections held in memory (a
 * mapped file's too), a file writer, the begin and the atomic commit of a
 * checkpoint directory into which every rank writes its files, with the
 * pruning of the old ones, and a finder that takes the newest checkpoint
 * that a caller's check accepts. The layer trainer's checkpoints (checkpoint.h) are built on
 * the same pieces; the language-model trainer's (runtime/lm/lm_checkpoint.c)
 * use them directly. */
#ifndef BL_CHECKPOINT_FILE_H
#define BL_CHECKPOINT_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime_impl.h"

/* The sizes of a file's header and of a section's header, in bytes. */
#define BL_CKPT_HEADER_BYTES  32u
#define BL_CKPT_SECTION_BYTES 16u

/* The format's newest version; a load reads every version from 1 on.
 * Version 2 added the manifest's CONTROL section, version 3 the language
 * model's STAGES and LAYERS sections, and version 4 the language model's
 * sharded checkpoints: lm.bin without the floats, with a FILES section
 * naming one stage file (kind 4) per pipeline stage (checkpoint.h). Each kind
 * of file is written in the newest version that changed it: the layer
 * trainer's files in version 3 (BL_CKPT_LAYER_VERSION), the language
 * model's in version 4. Each reader says how many sections its kind of file
 * holds in each version (bl_ckpt_read_header). */
#define BL_CKPT_VERSION       4u
#define BL_CKPT_LAYER_VERSION 3u

/* A file's kind, in its header: the layer trainer's manifest and stage
 * files, and the language-model trainer's manifest (its state; before
 * version 4 the whole checkpoint) and stage files. A reader that finds
 * another trainer's kind says so (BL_ERR_MISMATCH). */
#define BL_CKPT_KIND_MANIFEST 1u
#define BL_CKPT_KIND_STAGE    2u
#define BL_CKPT_KIND_LM       3u
#define BL_CKPT_KIND_LM_STAGE 4u

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
    BL_CKPT_SEC_FILES = 15,
    BL_CKPT_SEC_UNITS = 16,
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

/* As bl_ckpt_read_section, but without checking the payload's checksum,
 * which goes into *crc: for a reader that reads only parts of the payload
 * and checks them by checksums of its own (a language-model stage file's
 * pieces, whose CRC32s combine into the section's: crc32_combine). */
bl_status_t bl_ckpt_skip_section(bl_ckpt_reader_t *r, uint32_t id, size_t want,
                                 const unsigned char **out, size_t *len, uint32_t *crc);

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

/* Maps the file path of at most `max` bytes read-only: *out points at its
 * *len bytes (a 0-byte file gives a valid pointer and 0), page cache that the
 * kernel may reclaim rather than the process's own memory, so a reader
 * touches only the pages it reads. Give it back with bl_ckpt_unmap_file.
 * Returns BL_OK, or BL_ERR_IO (it cannot be opened or mapped) or
 * BL_ERR_FORMAT (larger than max) naming the file, with *out NULL. Local. */
bl_status_t bl_ckpt_map_file(bl_runtime_t *rt, const char *path, size_t max, unsigned char **out,
                             size_t *len);
void bl_ckpt_unmap_file(unsigned char *bytes, size_t len);

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

/* Encodes the header of a file of `kind` with `sections` sections, in the
 * newest version of that kind, into h. */
void bl_ckpt_put_header(unsigned char h[BL_CKPT_HEADER_BYTES], uint32_t kind, uint32_t sections);

/* Encodes into s the header of section `id` whose payload of `nbytes` bytes
 * has the CRC32 `crc` (zlib's crc32, which the caller computed, perhaps
 * piece by piece with crc32_combine). The payload follows it in the file. */
void bl_ckpt_put_section_crc(unsigned char s[BL_CKPT_SECTION_BYTES], uint32_t id, uint32_t crc,
                             uint64_t nbytes);

/* A file being written: buffered, flushed and fsynced when it is closed.
 * The first failure is kept; the later writes do nothing. */
typedef struct bl_ckpt_writer {
    FILE *f;
    const char *path;
    int failed; /* the errno of the first failure, or 0 */
} bl_ckpt_writer_t;

/* Creates path for writing. Returns BL_OK or BL_ERR_IO naming it. Local. */
bl_status_t bl_ckpt_writer_open(bl_runtime_t *rt, bl_ckpt_writer_t *w, const char *path);
/* Appends n bytes. */
void bl_ckpt_writer_put(bl_ckpt_writer_t *w, const void *bytes, size_t n);
/* Flushes, fsyncs and closes the file. Returns BL_OK, or BL_ERR_IO naming
 * the file and the first failure, of a write or of these steps. */
bl_status_t bl_ckpt_writer_close(bl_runtime_t *rt, bl_ckpt_writer_t *w);

/* Starts a checkpoint of several files: checks that this host can write
 * checkpoints and that the checkpoint's directory, dir/ckpt-<step>, fits in
 * path (n bytes; every rank gets it there); rank 0 creates dir if it is
 * missing and a temporary directory beside the checkpoints, whose name every
 * rank gets in tmpdir (PATH_MAX bytes), for the ranks to write their files
 * into. Collective over rt: every rank returns the same status: BL_OK,
 * BL_ERR_IO, BL_ERR_INVALID_ARG (a path that is too long) or
 * BL_ERR_UNSUPPORTED (a big-endian host). On failure nothing is left. */
bl_status_t bl_ckpt_begin(bl_runtime_t *rt, const char *dir, long step, char *tmpdir, char *path,
                          size_t n);

/* Ends a checkpoint begun with bl_ckpt_begin. The ranks first agree on
 * mine, each rank's status of its own files. Then rank 0 writes the file
 * `name` of `kind` with the `count` sections given (only rank 0 reads them)
 * into tmpdir, fsyncs the directory, renames it into place as path and
 * fsyncs dir, and keeps the newest `keep` checkpoints of this trainer (0
 * keeps all). Collective over rt: every rank returns the same status, BL_OK
 * or the first failure (BL_ERR_IO naming the file or directory). A failure
 * removes the temporary directory and leaves the previous checkpoints as
 * they were. */
bl_status_t bl_ckpt_commit(bl_runtime_t *rt, const char *dir, const char *tmpdir, bl_status_t mine,
                           const char *name, uint32_t kind, const bl_ckpt_section_t *sections,
                           int count, int keep, const char *path);

#endif /* BL_CHECKPOINT_FILE_H */
