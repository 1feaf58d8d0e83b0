/* The stage files of the language-model trainer's checkpoints (lm_impl.h:
 * bl_lm_stage_file_*). Stage K of S writes DIR/ckpt-<step>/stage-K-of-S.bin
 * with its units' parameters and AdamW moments, so that no rank gathers the
 * model for a save; a resume reads from each file only the pieces of the
 * units that it holds.
 *
 * A piece is one unit's part of one parameter range: a block's slice of a
 * per-layer tensor, the embedding's wte and wpe, the head's lnfw and lnfb
 * (and wte, when the file does not hold the embedding too), a user layer's
 * parameters. The file holds its units' ranges (bl_gpt2_unit_ranges, in
 * increasing offset) end to end, so the pieces follow one another in
 * increasing offset too, and the file of a single stage holds the model's
 * arrays whole. Every piece's CRC32 (of its parameters and of each moment)
 * is in the UNITS section, whose own CRC32 the manifest records, so a
 * reader checks exactly the bytes it reads, and a file of another
 * checkpoint is refused by name. The file's sections (checkpoint.h):
 *   GPT2 (the manifest's 32 bytes: the shape and the parameter count N),
 *   UNITS (u64 step, u32 stage K, u32 stages S, u32 first unit, u32 last
 *     unit (exclusive), u32 pieces n, u32 0; then n × (u64 parameter offset,
 *     u64 count, u32 unit, u32 CRC32 of its parameters, of its first
 *     moments, of its second moments)),
 *   PARAMS, ADAM_M, ADAM_V (the pieces' floats, in their order).
 * A writer computes each piece's CRC32 once and combines them into the
 * sections' (crc32_combine). */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "checkpoint_file.h"
#include "lm_impl.h"

/* The sections of a stage file: 5, in version 4 (the first that has them). */
#define STAGE_SECTIONS 5u
#define UNITS_HEAD     32u
#define PIECE_BYTES    32u

static const uint32_t stage_sections[BL_CKPT_VERSION] = {0, 0, 0, STAGE_SECTIONS};
static const uint32_t array_ids[3] = {BL_CKPT_SEC_PARAMS, BL_CKPT_SEC_ADAM_M, BL_CKPT_SEC_ADAM_V};

/* One piece: floats [offset, offset + count) of the parameter arrays, of
 * one unit. */
typedef struct piece {
    size_t offset, count;
    int unit;
} piece_t;

void bl_lm_put_shape(unsigned char p[BL_LM_SHAPE_BYTES], const bl_gpt2_t *g)
{
    const bl_gpt2_config_t *c = &g->config;
    const int v[6] = {c->max_seq_len, c->vocab_size, c->num_layers,
                      c->num_heads,   c->channels,   c->padded_vocab_size};
    for (int i = 0; i < 6; i++) {
        bl_le_put32(p + 4 * i, (uint32_t)v[i]);
    }
    bl_le_put64(p + 24, (uint64_t)g->param_count);
}

/* Writes the pieces of units [first, last) (first < last) into out (NULL:
 * only counts them) and returns their count. */
static int unit_pieces(const bl_gpt2_t *g, int first, int last, piece_t *out)
{
    bl_gpt2_range_t r[BL_GPT2_MAX_RANGES];
    const int n = bl_gpt2_unit_ranges(g, first, last, r), L = g->config.num_layers;
    int k = 0;
    for (int i = 0; i < n; i++) {
        const int id = r[i].tensor;
        if (id > BL_GPT2_WPE && id < BL_GPT2_LNFW) {
            /* The slices of blocks lo, lo + 1, ...: units lo + 1, ... */
            const bl_gpt2_tensor_t *t = &g->tensors[id];
            const size_t slice = t->count / (size_t)t->layers;
            const int lo = (int)((r[i].offset - t->offset) / slice);
            for (size_t at = 0; at < r[i].count; at += slice, k++) {
                if (out != NULL) {
                    out[k] = (piece_t){r[i].offset + at, slice, lo + (int)(at / slice) + 1};
                }
            }
            continue;
        }
        int unit = L + 1; /* lnfw, lnfb, and wte without the embedding */
        if (id == BL_GPT2_WPE || (id == BL_GPT2_WTE && first == 0)) {
            unit = 0;
        } else if (id >= BL_GPT2_TENSOR_COUNT) {
            unit = g->users[id - BL_GPT2_TENSOR_COUNT].layer.after;
        }
        if (out != NULL) {
            out[k] = (piece_t){r[i].offset, r[i].count, unit};
        }
        k++;
    }
    return k;
}

/* Allocates and fills the pieces of units [first, last); *count their
 * number. NULL when memory is short. */
static piece_t *make_pieces(bl_lm_trainer_t *t, int first, int last, int *count)
{
    *count = unit_pieces(t->model, first, last, NULL);
    piece_t *p = bl_mem_array(bl_rt_allocator(t->rt), (size_t)*count, sizeof *p);
    if (p != NULL) {
        unit_pieces(t->model, first, last, p);
    }
    return p;
}

static uint32_t crc_of(const void *bytes, size_t n)
{
    return (uint32_t)crc32_z(0L, (const Bytef *)bytes, (z_size_t)n);
}

/* Writes the path of stage file `stage` of `stages` in dir into out (n
 * bytes). Returns BL_OK or BL_ERR_INVALID_ARG (too long). */
static bl_status_t stage_path(bl_runtime_t *rt, const char *dir, int stage, int stages, char *out,
                              size_t n)
{
    if (snprintf(out, n, "%s/stage-%d-of-%d.bin", dir, stage, stages) >= (int)n) {
        return bl_fail(rt, BL_ERR_INVALID_ARG, "checkpoint directory %s: path too long", dir);
    }
    return BL_OK;
}

/* The bytes of a stage file of n pieces of `floats` floats in all. */
static uint64_t file_bytes(int n, size_t floats)
{
    return BL_CKPT_HEADER_BYTES + STAGE_SECTIONS * BL_CKPT_SECTION_BYTES + BL_LM_SHAPE_BYTES +
           UNITS_HEAD + PIECE_BYTES * (uint64_t)n + 3 * (uint64_t)floats * sizeof(float);
}

/* ---- Writing ----------------------------------------------------------- */

bl_status_t bl_lm_stage_file_write(bl_lm_trainer_t *t, const char *dir, int stage, int stages,
                                   int first, int last, long step, const bl_lm_state_t *state,
                                   bl_lm_stage_file_t *out)
{
    bl_runtime_t *rt = t->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    char path[PATH_MAX];
    bl_status_t st = stage_path(rt, dir, stage, stages, path, sizeof path);
    if (st != BL_OK) {
        return st;
    }
    int n = 0;
    piece_t *pieces = make_pieces(t, first, last, &n);
    const size_t units_bytes = UNITS_HEAD + PIECE_BYTES * (size_t)n;
    unsigned char *units = bl_mem_array(a, units_bytes, 1);
    if (pieces == NULL || units == NULL) {
        bl_mem_free(a, pieces);
        bl_mem_free(a, units);
        return bl_fail(rt, BL_ERR_NO_MEM, "rank %d: no memory for the pieces of %s", rt->rank,
                       path);
    }
    /* Each piece's CRC32s, combined in order into the sections'. */
    const float *arrays[3] = {state->params, state->adam_m, state->adam_v};
    uint32_t section_crc[3] = {0, 0, 0};
    size_t floats = 0;
    memset(units, 0, units_bytes);
    bl_le_put64(units, (uint64_t)step);
    bl_le_put32(units + 8, (uint32_t)stage);
    bl_le_put32(units + 12, (uint32_t)stages);
    bl_le_put32(units + 16, (uint32_t)first);
    bl_le_put32(units + 20, (uint32_t)last);
    bl_le_put32(units + 24, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        unsigned char *e = units + UNITS_HEAD + PIECE_BYTES * (size_t)i;
        const size_t nbytes = pieces[i].count * sizeof(float);
        bl_le_put64(e, (uint64_t)pieces[i].offset);
        bl_le_put64(e + 8, (uint64_t)pieces[i].count);
        bl_le_put32(e + 16, (uint32_t)pieces[i].unit);
        for (int k = 0; k < 3; k++) {
            const uint32_t crc = crc_of(arrays[k] + pieces[i].offset, nbytes);
            bl_le_put32(e + 20 + 4 * (size_t)k, crc);
            section_crc[k] = (uint32_t)crc32_combine(section_crc[k], crc, (z_off_t)nbytes);
        }
        floats += pieces[i].count;
    }
    unsigned char shape[BL_LM_SHAPE_BYTES], h[BL_CKPT_HEADER_BYTES], s[BL_CKPT_SECTION_BYTES];
    bl_lm_put_shape(shape, t->model);
    bl_ckpt_writer_t w;
    st = bl_ckpt_writer_open(rt, &w, path);
    if (st == BL_OK) {
        bl_ckpt_put_header(h, BL_CKPT_KIND_LM_STAGE, STAGE_SECTIONS);
        bl_ckpt_writer_put(&w, h, sizeof h);
        bl_ckpt_put_section_crc(s, BL_CKPT_SEC_GPT2, crc_of(shape, sizeof shape), sizeof shape);
        bl_ckpt_writer_put(&w, s, sizeof s);
        bl_ckpt_writer_put(&w, shape, sizeof shape);
        bl_ckpt_put_section_crc(s, BL_CKPT_SEC_UNITS, crc_of(units, units_bytes), units_bytes);
        bl_ckpt_writer_put(&w, s, sizeof s);
        bl_ckpt_writer_put(&w, units, units_bytes);
        for (int k = 0; k < 3; k++) {
            bl_ckpt_put_section_crc(s, array_ids[k], section_crc[k],
                                    (uint64_t)floats * sizeof(float));
            bl_ckpt_writer_put(&w, s, sizeof s);
            for (int i = 0; i < n; i++) {
                bl_ckpt_writer_put(&w, arrays[k] + pieces[i].offset,
                                   pieces[i].count * sizeof(float));
            }
        }
        st = bl_ckpt_writer_close(rt, &w);
    }
    *out = (bl_lm_stage_file_t){.first = first,
                                .last = last,
                                .bytes = file_bytes(n, floats),
                                .units_crc = crc_of(units, units_bytes)};
    bl_mem_free(a, pieces);
    bl_mem_free(a, units);
    return st;
}

/* ---- Reading ------------------------------------------------------------ */

/* A stage file mapped and its head checked. */
typedef struct stage_view {
    char path[PATH_MAX];
    unsigned char *bytes; /* the mapping, or NULL */
    size_t len;
    const unsigned char *units;   /* the UNITS entries (PIECE_BYTES each) */
    const unsigned char *data[3]; /* the PARAMS, ADAM_M and ADAM_V payloads */
    uint32_t data_crc[3];         /* their CRC32s, as their section headers say */
} stage_view_t;

static void close_view(stage_view_t *v)
{
    bl_ckpt_unmap_file(v->bytes, v->len);
    v->bytes = NULL;
}

/* Maps stage file `stage` of `stages` in dir and checks it against the
 * manifest's record *file (of `step`) and the model: its length first, then
 * its header, shape, units and pieces, which must be `pieces` (n of them),
 * and the lengths of the sections of floats, whose bytes are not read here
 * (read_pieces and check_pieces check them). On success the mapping is in
 * *v (close_view gives it back). */
static bl_status_t open_view(bl_lm_trainer_t *t, const char *dir, const char *manifest, int stage,
                             int stages, long step, const bl_lm_stage_file_t *file,
                             const piece_t *pieces, int n, stage_view_t *v)
{
    bl_runtime_t *rt = t->rt;
    v->bytes = NULL;
    v->len = 0;
    bl_status_t st = stage_path(rt, dir, stage, stages, v->path, sizeof v->path);
    if (st == BL_OK) {
        /* Any length is mapped (page cache, not memory), so that a longer
         * file is refused against the manifest's record below. */
        st = bl_ckpt_map_file(rt, v->path, SIZE_MAX, &v->bytes, &v->len);
    }
    if (st == BL_OK && v->len != file->bytes) {
        st = bl_fail(rt, BL_ERR_FORMAT,
                     "checkpoint file %s: %zu bytes; the manifest %s records %llu (%s)", v->path,
                     v->len, manifest, (unsigned long long)file->bytes,
                     v->len < file->bytes ? "truncated?" : "not the file written?");
    }
    if (st != BL_OK) {
        close_view(v);
        return st;
    }
    bl_ckpt_reader_t r = {.rt = rt, .name = v->path, .bytes = v->bytes, .len = v->len};
    const unsigned char *p = NULL;
    size_t len = 0;
    unsigned char shape[BL_LM_SHAPE_BYTES];
    bl_lm_put_shape(shape, t->model);
    st = bl_ckpt_read_header(&r, BL_CKPT_KIND_LM_STAGE, stage_sections);
    if (st == BL_OK) {
        st = bl_ckpt_read_section(&r, BL_CKPT_SEC_GPT2, sizeof shape, &p, &len);
    }
    if (st == BL_OK && memcmp(p, shape, sizeof shape) != 0) {
        st =
            bl_ckpt_bad(&r, "GPT2 section: the shape differs from this model's and the manifest's");
    }
    if (st == BL_OK) {
        st = bl_ckpt_read_section(&r, BL_CKPT_SEC_UNITS, UNITS_HEAD + PIECE_BYTES * (size_t)n, &p,
                                  &len);
    }
    if (st == BL_OK &&
        (bl_le_get64(p) != (uint64_t)step || bl_le_get32(p + 8) != (uint32_t)stage ||
         bl_le_get32(p + 12) != (uint32_t)stages || bl_le_get32(p + 16) != (uint32_t)file->first ||
         bl_le_get32(p + 20) != (uint32_t)file->last || bl_le_get32(p + 24) != (uint32_t)n ||
         bl_le_get32(p + 28) != 0)) {
        st = bl_ckpt_bad(&r,
                         "UNITS section: step %llu, stage %u of %u, units [%u, %u); the manifest "
                         "%s records step %ld, stage %d of %d, units [%d, %d)",
                         (unsigned long long)bl_le_get64(p), bl_le_get32(p + 8),
                         bl_le_get32(p + 12), bl_le_get32(p + 16), bl_le_get32(p + 20), manifest,
                         step, stage, stages, file->first, file->last);
    }
    if (st == BL_OK && crc_of(p, len) != file->units_crc) {
        st = bl_ckpt_bad(&r,
                         "UNITS section: its CRC32 %08x is not the %08x that the manifest %s "
                         "records (a stage file of another checkpoint?)",
                         crc_of(p, len), file->units_crc, manifest);
    }
    size_t floats = 0;
    for (int i = 0; st == BL_OK && i < n; i++) {
        const unsigned char *e = p + UNITS_HEAD + PIECE_BYTES * (size_t)i;
        if (bl_le_get64(e) != pieces[i].offset || bl_le_get64(e + 8) != pieces[i].count ||
            bl_le_get32(e + 16) != (uint32_t)pieces[i].unit) {
            st = bl_ckpt_bad(&r,
                             "UNITS section: piece %d is %llu floats from %llu of unit %u; this "
                             "model's is %zu from %zu of unit %d",
                             i, (unsigned long long)bl_le_get64(e + 8),
                             (unsigned long long)bl_le_get64(e), bl_le_get32(e + 16),
                             pieces[i].count, pieces[i].offset, pieces[i].unit);
        }
        floats += pieces[i].count;
    }
    if (st == BL_OK) {
        v->units = p + UNITS_HEAD;
    }
    for (int k = 0; k < 3 && st == BL_OK; k++) {
        st = bl_ckpt_skip_section(&r, array_ids[k], floats * sizeof(float), &v->data[k], &len,
                                  &v->data_crc[k]);
    }
    if (st == BL_OK) {
        st = bl_ckpt_read_end(&r);
    }
    if (st != BL_OK) {
        close_view(v);
    }
    return st;
}

static const char *const array_names[3] = {"parameters", "first moments", "second moments"};

/* Checks the CRC32 of piece i's floats at `from` in array k of the file in
 * *v against its entry, and sets *crc to it. */
static bl_status_t check_piece(bl_lm_trainer_t *t, const stage_view_t *v, const piece_t *pieces,
                               int i, int k, const unsigned char *from, uint32_t *crc)
{
    *crc = crc_of(from, pieces[i].count * sizeof(float));
    if (*crc != bl_le_get32(v->units + PIECE_BYTES * (size_t)i + 20 + 4 * (size_t)k)) {
        return bl_fail(t->rt, BL_ERR_FORMAT,
                       "checkpoint file %s: piece %d (unit %d, %zu floats from %zu): the %s' "
                       "checksum mismatch",
                       v->path, i, pieces[i].unit, pieces[i].count, pieces[i].offset,
                       array_names[k]);
    }
    return BL_OK;
}

/* Checks every piece of the file in *v against its CRC32, and the pieces'
 * CRC32s, combined, against their sections'. */
static bl_status_t check_pieces(bl_lm_trainer_t *t, const stage_view_t *v, const piece_t *pieces,
                                int n)
{
    static const char *const sections[3] = {"PARAMS", "ADAM_M", "ADAM_V"};
    for (int k = 0; k < 3; k++) {
        uint32_t combined = 0, crc = 0;
        size_t at = 0;
        for (int i = 0; i < n; at += pieces[i].count, i++) {
            bl_status_t st = check_piece(t, v, pieces, i, k, v->data[k] + at * sizeof(float), &crc);
            if (st != BL_OK) {
                return st;
            }
            combined =
                (uint32_t)crc32_combine(combined, crc, (z_off_t)(pieces[i].count * sizeof(float)));
        }
        if (combined != v->data_crc[k]) {
            return bl_fail(t->rt, BL_ERR_FORMAT,
                           "checkpoint file %s: %s section: checksum mismatch", v->path,
                           sections[k]);
        }
    }
    return BL_OK;
}

bl_status_t bl_lm_stage_file_check(bl_lm_trainer_t *t, const char *dir, const char *manifest,
                                   int stage, int stages, long step, const bl_lm_stage_file_t *file)
{
    int n = 0;
    piece_t *pieces = make_pieces(t, file->first, file->last, &n);
    if (pieces == NULL) {
        return bl_fail(t->rt, BL_ERR_NO_MEM, "no memory to check a checkpoint's stage file");
    }
    stage_view_t v;
    bl_status_t st = open_view(t, dir, manifest, stage, stages, step, file, pieces, n, &v);
    if (st == BL_OK) {
        st = check_pieces(t, &v, pieces, n);
        close_view(&v);
    }
    bl_mem_free(bl_rt_allocator(t->rt), pieces);
    return st;
}

/* ---- Loading ------------------------------------------------------------ */

/* The floats of [offset, offset + count) that lie in [r->offset, r->offset
 * + r->count). */
static size_t overlap(size_t offset, size_t count, const bl_gpt2_range_t *r)
{
    const size_t lo = offset > r->offset ? offset : r->offset;
    const size_t hi = offset + count < r->offset + r->count ? offset + count : r->offset + r->count;
    return lo < hi ? hi - lo : 0;
}

/* What one array of the window needs, and the pieces already read into it
 * (pieces of two files are the same or disjoint: the same piece is wte,
 * which the first and the last stage both hold). */
typedef struct array_load {
    float *to;
    const bl_gpt2_range_t *need;
    int need_count;
    piece_t *done;
    int done_count;
} array_load_t;

/* Whether the piece is needed in the array and not read yet. */
static int wanted(const array_load_t *a, const piece_t *p)
{
    for (int i = 0; i < a->done_count; i++) {
        if (a->done[i].offset == p->offset) {
            return 0;
        }
    }
    for (int i = 0; i < a->need_count; i++) {
        if (overlap(p->offset, p->count, &a->need[i]) > 0) {
            return 1;
        }
    }
    return 0;
}

/* Reads the pieces of the file in *v that the arrays want, each checked
 * against its CRC32. */
static bl_status_t read_pieces(bl_lm_trainer_t *t, const stage_view_t *v, const piece_t *pieces,
                               int n, array_load_t *arrays)
{
    size_t at = 0; /* the piece's first float in each section */
    for (int i = 0; i < n; at += pieces[i].count, i++) {
        for (int k = 0; k < 3; k++) {
            if (!wanted(&arrays[k], &pieces[i])) {
                continue;
            }
            const unsigned char *from = v->data[k] + at * sizeof(float);
            uint32_t crc = 0;
            bl_status_t st = check_piece(t, v, pieces, i, k, from, &crc);
            if (st != BL_OK) {
                return st;
            }
            memcpy(arrays[k].to + pieces[i].offset, from, pieces[i].count * sizeof(float));
            arrays[k].done[arrays[k].done_count++] = pieces[i];
        }
    }
    return BL_OK;
}

/* Checks that the pieces read cover every range that the array needs. */
static bl_status_t check_covered(bl_lm_trainer_t *t, const char *manifest, const array_load_t *a)
{
    for (int i = 0; i < a->need_count; i++) {
        size_t got = 0;
        for (int j = 0; j < a->done_count; j++) {
            got += overlap(a->done[j].offset, a->done[j].count, &a->need[i]);
        }
        if (got != a->need[i].count) {
            return bl_fail(t->rt, BL_ERR_FORMAT,
                           "checkpoint %s: its stage files hold %zu of the %zu floats from %zu "
                           "that this rank needs",
                           manifest, got, a->need[i].count, a->need[i].offset);
        }
    }
    return BL_OK;
}

/* Loads from stage file `stage` what the arrays still want, if anything. */
static bl_status_t load_file(bl_lm_trainer_t *t, const char *dir, const char *manifest, int stage,
                             int stages, long step, const bl_lm_stage_file_t *file,
                             array_load_t *arrays)
{
    int n = 0;
    piece_t *pieces = make_pieces(t, file->first, file->last, &n);
    if (pieces == NULL) {
        return bl_fail(t->rt, BL_ERR_NO_MEM, "no memory to load a checkpoint's stage file");
    }
    int any = 0;
    for (int i = 0; i < n && !any; i++) {
        any = wanted(&arrays[0], &pieces[i]) || wanted(&arrays[1], &pieces[i]) ||
              wanted(&arrays[2], &pieces[i]);
    }
    bl_status_t st = BL_OK;
    if (any) {
        stage_view_t v;
        st = open_view(t, dir, manifest, stage, stages, step, file, pieces, n, &v);
        if (st == BL_OK) {
            st = read_pieces(t, &v, pieces, n, arrays);
            close_view(&v);
        }
    }
    bl_mem_free(bl_rt_allocator(t->rt), pieces);
    return st;
}

bl_status_t bl_lm_stage_files_load(bl_lm_trainer_t *t, const char *dir, const char *manifest,
                                   const bl_lm_stage_file_t *files, int stages, long step,
                                   const bl_lm_window_t *w)
{
    const bl_allocator_t *a = bl_rt_allocator(t->rt);
    /* Every piece of the model at most once an array. */
    const int most = unit_pieces(t->model, 0, t->model->config.num_layers + 2, NULL);
    array_load_t arrays[3] = {
        {w->params, w->params_need, w->params_count, NULL, 0},
        {w->adam_m, w->moments_need, w->moments_count, NULL, 0},
        {w->adam_v, w->moments_need, w->moments_count, NULL, 0},
    };
    bl_status_t st = BL_OK;
    for (int k = 0; k < 3 && st == BL_OK; k++) {
        arrays[k].done = bl_mem_array(a, (size_t)most, sizeof *arrays[k].done);
        if (arrays[k].done == NULL) {
            st = bl_fail(t->rt, BL_ERR_NO_MEM, "no memory to load a checkpoint");
        }
    }
    /* First the files of the window's units, then the others for what
     * those lacked. */
    for (int pass = 0; pass < 2 && st == BL_OK; pass++) {
        for (int s = 0; s < stages && st == BL_OK; s++) {
            const int mine = files[s].first < w->last && files[s].last > w->first;
            if (mine == (pass == 0)) {
                st = load_file(t, dir, manifest, s, stages, step, &files[s], arrays);
            }
        }
    }
    for (int k = 0; k < 3 && st == BL_OK; k++) {
        st = check_covered(t, manifest, &arrays[k]);
    }
    for (int k = 0; k < 3; k++) {
        bl_mem_free(a, arrays[k].done);
    }
    return st;
}
