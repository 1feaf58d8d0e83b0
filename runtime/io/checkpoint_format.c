/* The checkpoint file format, with no file system. This file encodes a
 * file's header and a section's header for the writer, and it checks and
 * decodes a manifest or a stage file held in memory for the loader and for
 * the fuzzers (bl_ckpt_check_file). Every length is checked against the
 * model and against the bytes that are left before anything is allocated or
 * read, and the CRC32 that every header and section carries is checked. A
 * malformed file gives BL_ERR_FORMAT with a message that names the file and
 * the field; a file of another model gives BL_ERR_MISMATCH. checkpoint.h
 * describes the layout. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "checkpoint_impl.h"

#define MAGIC "BALLASTK"
/* The newest version is BL_CKPT_VERSION (checkpoint_file.h); each kind of
 * file is written in the newest version that changed it (kind_version).
 * Older files are still read: a version 1 manifest has no CONTROL section
 * (its run resumes with fresh policies), a version 2 language-model file no
 * STAGES section (its run resumes on its own stage map), and a version 3
 * one holds the floats itself, without stage files. */
#define VERSION        BL_CKPT_VERSION
#define BYTE_ORDER_TAG 0x01020304u

static const char *const section_names[BL_CKPT_SEC_COUNT] = {
    "?",        "MODEL",  "STATE",  "LAYOUT", "RANGE",  "PARAMS", "MOMENTUM", "CONTROL", "GPT2",
    "LM_STATE", "SHARDS", "ADAM_M", "ADAM_V", "STAGES", "LAYERS", "FILES",    "UNITS"};

/* What each kind of file is, for the message that refuses another
 * trainer's file. */
static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case BL_CKPT_KIND_MANIFEST:
        return "the layer trainer's manifest";
    case BL_CKPT_KIND_STAGE:
        return "a stage file of the layer trainer";
    case BL_CKPT_KIND_LM:
        return "the language-model trainer's state";
    case BL_CKPT_KIND_LM_STAGE:
        return "a stage file of the language-model trainer";
    default:
        return "?";
    }
}

/* Whether a kind of file is the language-model trainer's. */
static int is_lm_kind(uint32_t kind)
{
    return kind == BL_CKPT_KIND_LM || kind == BL_CKPT_KIND_LM_STAGE;
}

/* The version in which a file of `kind` is written: the newest that changed
 * it (the layer trainer's files have not changed since version 3). */
static uint32_t kind_version(uint32_t kind)
{
    return is_lm_kind(kind) ? VERSION : BL_CKPT_LAYER_VERSION;
}

static uint32_t crc_of(const void *bytes, size_t n)
{
    return (uint32_t)crc32_z(0L, (const Bytef *)bytes, n);
}

/* ---- Encoding --------------------------------------------------------- */

void bl_ckpt_put_header(unsigned char h[BL_CKPT_HEADER_BYTES], uint32_t kind, uint32_t sections)
{
    memset(h, 0, BL_CKPT_HEADER_BYTES);
    memcpy(h, MAGIC, 8);
    bl_le_put32(h + 8, kind_version(kind));
    bl_le_put32(h + 12, BYTE_ORDER_TAG);
    bl_le_put32(h + 16, kind);
    bl_le_put32(h + 20, sections);
    bl_le_put32(h + 24, crc_of(h, 24));
}

void bl_ckpt_put_section(unsigned char s[BL_CKPT_SECTION_BYTES], uint32_t id, const void *bytes,
                         size_t nbytes)
{
    bl_ckpt_put_section_crc(s, id, crc_of(bytes, nbytes), (uint64_t)nbytes);
}

void bl_ckpt_put_section_crc(unsigned char s[BL_CKPT_SECTION_BYTES], uint32_t id, uint32_t crc,
                             uint64_t nbytes)
{
    bl_le_put32(s, id);
    bl_le_put32(s + 4, crc);
    bl_le_put64(s + 8, nbytes);
}

/* ---- Decoding --------------------------------------------------------- */

typedef bl_ckpt_reader_t reader_t;

bl_status_t bl_ckpt_bad(const reader_t *r, const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return bl_fail(r->rt, BL_ERR_FORMAT, "checkpoint file %s: %s", r->name, why);
}

bl_status_t bl_ckpt_read_header(reader_t *r, uint32_t kind, const uint32_t sections[VERSION])
{
    const unsigned char *h = r->bytes;
    if (r->len < BL_CKPT_HEADER_BYTES) {
        return bl_ckpt_bad(r, "header: %zu bytes, shorter than a header", r->len);
    }
    if (memcmp(h, MAGIC, 8) != 0) {
        return bl_ckpt_bad(r, "header: not a ballast checkpoint file (magic)");
    }
    if (bl_le_get32(h + 24) != crc_of(h, 24) || bl_le_get32(h + 28) != 0) {
        return bl_ckpt_bad(r, "header: checksum mismatch");
    }
    if (bl_le_get32(h + 12) != BYTE_ORDER_TAG) {
        return bl_ckpt_bad(r, "header: byte order tag %#x (written on another byte order?)",
                           bl_le_get32(h + 12));
    }
    /* The language model's files and the layer trainer's are never taken
     * for each other, whatever their version. */
    uint32_t got = bl_le_get32(h + 16);
    if (got != kind && is_lm_kind(got) != is_lm_kind(kind) && got >= BL_CKPT_KIND_MANIFEST &&
        got <= BL_CKPT_KIND_LM_STAGE) {
        return bl_fail(r->rt, BL_ERR_MISMATCH, "checkpoint file %s holds %s, not %s", r->name,
                       kind_name(got), kind_name(kind));
    }
    /* The newest version of this kind: the last that holds sections. */
    uint32_t newest = VERSION;
    while (newest > 1 && sections[newest - 1] == 0) {
        newest--;
    }
    r->version = bl_le_get32(h + 8);
    if (r->version < 1 || r->version > newest) {
        return bl_ckpt_bad(r, "header: version %u; this library reads versions 1 to %u", r->version,
                           newest);
    }
    if (got != kind || sections[r->version - 1] == 0 ||
        bl_le_get32(h + 20) != sections[r->version - 1]) {
        return bl_ckpt_bad(r,
                           "header: kind %u with %u sections in version %u, not the file "
                           "expected here",
                           got, bl_le_get32(h + 20), r->version);
    }
    r->pos = BL_CKPT_HEADER_BYTES;
    return BL_OK;
}

/* Reads the next section, checking its payload's checksum when `check`. */
static bl_status_t read_section(reader_t *r, uint32_t id, size_t want, int check,
                                const unsigned char **out, size_t *len)
{
    const char *name = id < BL_CKPT_SEC_COUNT ? section_names[id] : "?";
    if (r->len - r->pos < BL_CKPT_SECTION_BYTES) {
        return bl_ckpt_bad(r, "%s section: truncated before its header (%zu bytes left)", name,
                           r->len - r->pos);
    }
    const unsigned char *s = r->bytes + r->pos;
    uint64_t n = bl_le_get64(s + 8);
    if (bl_le_get32(s) != id) {
        return bl_ckpt_bad(r, "%s section expected; found section id %u", name, bl_le_get32(s));
    }
    if (n > r->len - r->pos - BL_CKPT_SECTION_BYTES) {
        return bl_ckpt_bad(r, "%s section: %llu bytes announced, more than the file holds", name,
                           (unsigned long long)n);
    }
    if (want != 0 && n != want) {
        return bl_ckpt_bad(r, "%s section: %llu bytes; %zu expected", name, (unsigned long long)n,
                           want);
    }
    if (check && bl_le_get32(s + 4) != crc_of(s + BL_CKPT_SECTION_BYTES, (size_t)n)) {
        return bl_ckpt_bad(r, "%s section: checksum mismatch", name);
    }
    *out = s + BL_CKPT_SECTION_BYTES;
    *len = (size_t)n;
    r->pos += BL_CKPT_SECTION_BYTES + (size_t)n;
    return BL_OK;
}

bl_status_t bl_ckpt_read_section(reader_t *r, uint32_t id, size_t want, const unsigned char **out,
                                 size_t *len)
{
    return read_section(r, id, want, 1, out, len);
}

bl_status_t bl_ckpt_skip_section(reader_t *r, uint32_t id, size_t want, const unsigned char **out,
                                 size_t *len, uint32_t *crc)
{
    bl_status_t st = read_section(r, id, want, 0, out, len);
    if (st == BL_OK) {
        *crc = bl_le_get32(*out - BL_CKPT_SECTION_BYTES + 4);
    }
    return st;
}

bl_status_t bl_ckpt_read_map(const reader_t *r, const char *section, const unsigned char *p,
                             uint32_t stages, uint32_t units, const char *unit, int *first)
{
    uint32_t prev = 0;
    for (uint32_t i = 0; i <= stages; i++) {
        uint32_t f = bl_le_get32(p + 4 * (size_t)i);
        if (i == 0 && f != 0) {
            return bl_ckpt_bad(r,
                               "%s section: stage map entry 0 is %s %u; the first stage must "
                               "start at %s 0",
                               section, unit, f, unit);
        }
        if (i > 0 && f <= prev) {
            return bl_ckpt_bad(r,
                               "%s section: stage map entry %u is %s %u, not after entry %u (%u): "
                               "the stages must be in order, each with a %s",
                               section, i, unit, f, i - 1, prev, unit);
        }
        if (i < stages && f >= units) {
            return bl_ckpt_bad(r,
                               "%s section: stage map entry %u is %s %u, past the model's last "
                               "%s %u: a later stage is left without one",
                               section, i, unit, f, unit, units - 1);
        }
        if (i == stages && f != units) {
            return bl_ckpt_bad(r,
                               "%s section: stage map entry %u (the end) is %s %u; the last "
                               "stage must end at the model's %u %ss",
                               section, i, unit, f, units, unit);
        }
        if (first != NULL) {
            first[i] = (int)f;
        }
        prev = f;
    }
    return BL_OK;
}

bl_status_t bl_ckpt_read_end(const reader_t *r)
{
    return r->pos == r->len ? BL_OK
                            : bl_ckpt_bad(r, "%zu bytes after the last section", r->len - r->pos);
}

/* Reads the MODEL section and checks it against m. Returns BL_OK,
 * BL_ERR_FORMAT for a malformed section, or BL_ERR_MISMATCH for another
 * model. */
static bl_status_t check_model(reader_t *r, const bl_model_t *m)
{
    const unsigned char *p;
    size_t len;
    bl_status_t st = bl_ckpt_read_section(r, BL_CKPT_SEC_MODEL, 0, &p, &len);
    if (st != BL_OK) {
        return st;
    }
    if (len < 8 || (len - 8) % 20 != 0 || (len - 8) / 20 != bl_le_get32(p)) {
        return bl_ckpt_bad(r, "MODEL section: %zu bytes for %u layers", len,
                           len >= 8 ? bl_le_get32(p) : 0);
    }
    if (bl_le_get32(p) != (uint32_t)m->layer_count ||
        bl_le_get32(p + 4) != (uint32_t)m->in_features) {
        return bl_fail(r->rt, BL_ERR_MISMATCH,
                       "checkpoint file %s: saved from a model of %u layers and input width %u; "
                       "this one has %d and %d",
                       r->name, bl_le_get32(p), bl_le_get32(p + 4), m->layer_count, m->in_features);
    }
    for (int i = 0; i < m->layer_count; i++) {
        const unsigned char *q = p + 8 + 20 * (size_t)i;
        const bl_layer_t *l = &m->layers[i];
        if (bl_le_get32(q) != (uint32_t)l->kind || bl_le_get32(q + 4) != (uint32_t)l->in_features ||
            bl_le_get32(q + 8) != (uint32_t)l->out_features ||
            bl_le_get64(q + 12) != (uint64_t)l->param_count) {
            return bl_fail(r->rt, BL_ERR_MISMATCH,
                           "checkpoint file %s: layer %d differs from this model's (kind %u, "
                           "%u -> %u, %llu parameters saved)",
                           r->name, i, bl_le_get32(q), bl_le_get32(q + 4), bl_le_get32(q + 8),
                           (unsigned long long)bl_le_get64(q + 12));
        }
    }
    return BL_OK;
}

/* Parses a manifest: the model's shape, then the state and the layout,
 * which go into *s, with its arrays allocated, when s is not NULL. Returns
 * BL_OK, BL_ERR_FORMAT, BL_ERR_MISMATCH or BL_ERR_NO_MEM. */
static bl_status_t parse_manifest(reader_t *r, const bl_model_t *m, bl_ckpt_state_t *s)
{
    /* Version 2 added the CONTROL section; version 4 changed only the
     * language model's files, so a manifest of version 4 is refused. */
    static const uint32_t counts[VERSION] = {3, 4, 4, 0};
    bl_status_t st = bl_ckpt_read_header(r, BL_CKPT_KIND_MANIFEST, counts);
    if (st == BL_OK) {
        st = check_model(r, m);
    }
    const unsigned char *p;
    size_t len;
    if (st == BL_OK) {
        st = bl_ckpt_read_section(r, BL_CKPT_SEC_STATE, 32, &p, &len);
    }
    if (st != BL_OK) {
        return st;
    }
    bl_ckpt_state_t got = {.step = (long)bl_le_get64(p),
                           .seed = bl_le_get64(p + 8),
                           .batch = (int)bl_le_get32(p + 16),
                           .shuffle = (int)bl_le_get32(p + 20)};
    long version = (long)bl_le_get64(p + 24);
    if (bl_le_get64(p) > (uint64_t)LONG_MAX || bl_le_get32(p + 16) == 0 ||
        bl_le_get32(p + 16) > INT_MAX || bl_le_get32(p + 20) > 1 ||
        bl_le_get64(p + 24) > (uint64_t)LONG_MAX) {
        return bl_ckpt_bad(r, "STATE section: step, batch, shuffle or plan version out of range");
    }
    st = bl_ckpt_read_section(r, BL_CKPT_SEC_LAYOUT, 0, &p, &len);
    if (st != BL_OK) {
        return st;
    }
    if (len < 12) {
        return bl_ckpt_bad(r, "LAYOUT section: %zu bytes, shorter than its counts", len);
    }
    uint32_t P = bl_le_get32(p), D = bl_le_get32(p + 4), S = bl_le_get32(p + 8);
    if (S < 1 || S > (uint32_t)m->layer_count || D < 1 || P != D * S || P > (1u << 20) ||
        len != 12 + 4 * ((size_t)S + 1 + D)) {
        return bl_ckpt_bad(r, "LAYOUT section: %zu bytes for %u ranks, %u pipelines and %u stages",
                           len, P, D, S);
    }
    st = bl_ckpt_read_map(r, "LAYOUT", p + 12, S, (uint32_t)m->layer_count, "layer", NULL);
    if (st != BL_OK) {
        return st;
    }
    long sum = 0;
    for (uint32_t d = 0; d < D; d++) {
        sum += bl_le_get32(p + 12 + 4 * ((size_t)S + 1 + d));
    }
    if (sum != got.batch) {
        return bl_ckpt_bad(r, "LAYOUT section: the shards sum to %ld, not the batch %d", sum,
                           got.batch);
    }
    /* The policies' learned state is opaque here; its loaders check it. */
    const unsigned char *control = NULL;
    size_t control_bytes = 0;
    if (r->version >= 2) {
        st = bl_ckpt_read_section(r, BL_CKPT_SEC_CONTROL, 0, &control, &control_bytes);
        if (st != BL_OK) {
            return st;
        }
    }
    st = bl_ckpt_read_end(r);
    if (st != BL_OK || s == NULL) {
        return st;
    }
    const bl_allocator_t *a = bl_rt_allocator(r->rt);
    bl_part_allocator_t pa = bl_rt_part_allocator(r->rt);
    got.ranks = (int)P;
    int planned = bl_plan_init(&got.plan, (int)D, (int)S, m->layer_count, got.batch, 0, &pa) == 0;
    if (control_bytes > 0) {
        got.control = bl_mem_array(a, control_bytes, 1);
        got.control_bytes = got.control != NULL ? control_bytes : 0;
    }
    if (!planned || (control_bytes > 0 && got.control == NULL)) {
        bl_ckpt_state_free(r->rt, &got);
        return bl_fail(r->rt, BL_ERR_NO_MEM, "no memory for a checkpoint's layout");
    }
    got.plan.version = version;
    for (uint32_t i = 0; i <= S; i++) {
        got.plan.first[i] = (int)bl_le_get32(p + 12 + 4 * (size_t)i);
    }
    for (uint32_t d = 0; d < D; d++) {
        got.plan.shards[d] = (long)bl_le_get32(p + 12 + 4 * ((size_t)S + 1 + d));
    }
    if (control_bytes > 0) {
        memcpy(got.control, control, control_bytes);
    }
    *s = got;
    return BL_OK;
}

/* Parses a stage file. Its range must be [lo, hi) when lo >= 0, else any
 * whole layers of m. The part of its parameters and momentum inside w's
 * window goes into w's arrays when w is not NULL. Returns BL_OK or
 * BL_ERR_FORMAT. */
static bl_status_t parse_stage(reader_t *r, const bl_model_t *m, int lo, int hi,
                               const bl_ckpt_window_t *w)
{
    static const uint32_t counts[VERSION] = {3, 3, 3, 0};
    bl_status_t st = bl_ckpt_read_header(r, BL_CKPT_KIND_STAGE, counts);
    const unsigned char *p;
    size_t len;
    if (st == BL_OK) {
        st = bl_ckpt_read_section(r, BL_CKPT_SEC_RANGE, 24, &p, &len);
    }
    if (st != BL_OK) {
        return st;
    }
    uint32_t a = bl_le_get32(p), b = bl_le_get32(p + 4);
    if (a >= b || b > (uint32_t)m->layer_count ||
        (lo >= 0 && (a != (uint32_t)lo || b != (uint32_t)hi))) {
        return bl_ckpt_bad(r, "RANGE section: layers [%u, %u) are not this stage's", a, b);
    }
    size_t first, count;
    bl_ckpt_param_range(m, (int)a, (int)b, &first, &count);
    if (bl_le_get64(p + 8) != first || bl_le_get64(p + 16) != count) {
        return bl_ckpt_bad(r,
                           "RANGE section: %llu parameters from %llu, not the model's %zu from %zu",
                           (unsigned long long)bl_le_get64(p + 16),
                           (unsigned long long)bl_le_get64(p + 8), count, first);
    }
    /* The layers are laid out in order, so the overlap of the file's layers
     * with the window's is the overlap of their parameter ranges. */
    size_t from = 0, to = 0;
    if (w != NULL) {
        from = first > w->first ? first : w->first;
        to = first + count < w->first + w->count ? first + count : w->first + w->count;
    }
    for (int k = 0; k < 2; k++) {
        st = bl_ckpt_read_section(r, k == 0 ? BL_CKPT_SEC_PARAMS : BL_CKPT_SEC_MOMENTUM,
                                  count * sizeof(float), &p, &len);
        if (st != BL_OK) {
            return st;
        }
        if (from < to) {
            memcpy((k == 0 ? w->params : w->momentum) + (from - w->first),
                   p + (from - first) * sizeof(float), (to - from) * sizeof(float));
        }
    }
    return bl_ckpt_read_end(r);
}

bl_status_t bl_ckpt_parse_manifest(bl_runtime_t *rt, const char *name, const unsigned char *bytes,
                                   size_t len, const bl_model_t *m, bl_ckpt_state_t *s)
{
    reader_t r = {.rt = rt, .name = name, .bytes = bytes, .len = len};
    return parse_manifest(&r, m, s);
}

bl_status_t bl_ckpt_parse_stage(bl_runtime_t *rt, const char *name, const unsigned char *bytes,
                                size_t len, const bl_model_t *m, int lo, int hi,
                                const bl_ckpt_window_t *w)
{
    reader_t r = {.rt = rt, .name = name, .bytes = bytes, .len = len};
    return parse_stage(&r, m, lo, hi, w);
}

bl_status_t bl_ckpt_check_file(bl_runtime_t *rt, const char *name, const unsigned char *bytes,
                               size_t len, const bl_model_t *m)
{
    reader_t r = {.rt = rt, .name = name, .bytes = bytes, .len = len};
    if (len >= BL_CKPT_HEADER_BYTES && bl_le_get32(bytes + 16) == BL_CKPT_KIND_STAGE) {
        return parse_stage(&r, m, -1, -1, NULL);
    }
    return parse_manifest(&r, m, NULL);
}
