/* The manifest of the language-model trainer's checkpoints, lm.bin
 * (lm_impl.h: bl_lm_manifest_*; lm_checkpoint.c describes the checkpoint,
 * runtime/io/checkpoint.h the file): its decoding, in place in the mapped
 * file, and the checks that it is intact and this run's. Every section is
 * checked before anything is taken from it: its length against the model
 * and against what the file holds, its CRC32, and its fields against one
 * another (the shards sum to the batch, the stage map covers the units, the
 * stage files follow the map, the user layers fit the model). A file of
 * another run is BL_ERR_MISMATCH naming the field and both values. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint_file.h"
#include "lm_impl.h"

#define MAX_RANKS (1u << 20)

uint32_t bl_lm_layer_flags(const bl_lm_layer_t *l)
{
    return (uint32_t)(l->decay != 0) | (uint32_t)(l->inside != 0) << 1;
}

/* The sections that lm.bin holds in each version of the format: none in
 * version 1, 7 in version 2, 9 in version 3 (STAGES, LAYERS), and 7 in
 * version 4 (FILES in place of the floats). */
static const uint32_t lm_sections[BL_CKPT_VERSION] = {0, 7, 9, BL_LM_MANIFEST_SECTIONS};

/* Reads the GPT2 and LM_STATE sections (the reader is past the header) into
 * *s. Returns BL_OK or BL_ERR_FORMAT. */
static bl_status_t parse_head(bl_ckpt_reader_t *r, bl_lm_manifest_t *s)
{
    const unsigned char *p;
    size_t len;
    bl_status_t st = bl_ckpt_read_section(r, BL_CKPT_SEC_GPT2, BL_LM_SHAPE_BYTES, &p, &len);
    if (st != BL_OK) {
        return st;
    }
    int v[6];
    for (int i = 0; i < 6; i++) {
        uint32_t x = bl_le_get32(p + 4 * i);
        if (x == 0 || x > INT_MAX) {
            return bl_ckpt_bad(r, "GPT2 section: shape field %d is %u", i, x);
        }
        v[i] = (int)x;
    }
    s->shape = (bl_gpt2_config_t){.max_seq_len = v[0],
                                  .vocab_size = v[1],
                                  .num_layers = v[2],
                                  .num_heads = v[3],
                                  .channels = v[4],
                                  .padded_vocab_size = v[5]};
    s->param_count = bl_le_get64(p + 24);
    if (s->param_count == 0 || s->param_count > SIZE_MAX / (3 * sizeof(float))) {
        return bl_ckpt_bad(r, "GPT2 section: %llu parameters", (unsigned long long)s->param_count);
    }
    st = bl_ckpt_read_section(r, BL_CKPT_SEC_LM_STATE, BL_LM_STATE_BYTES, &p, &len);
    if (st != BL_OK) {
        return st;
    }
    if (bl_le_get64(p) > (uint64_t)LONG_MAX || bl_le_get32(p + 16) == 0 ||
        bl_le_get32(p + 16) > INT_MAX || bl_le_get32(p + 20) == 0 ||
        bl_le_get32(p + 20) > INT_MAX || bl_le_get32(p + 24) > 1 || bl_le_get32(p + 28) != 0 ||
        bl_le_get64(p + 32) > (uint64_t)LONG_MAX || bl_le_get64(p + 40) > (uint64_t)LONG_MAX) {
        return bl_ckpt_bad(r, "LM_STATE section: step, batch, sequence length, shuffle, AdamW "
                              "steps or plan version out of range");
    }
    s->step = (long)bl_le_get64(p);
    s->seed = bl_le_get64(p + 8);
    s->batch = (int)bl_le_get32(p + 16);
    s->seq_len = (int)bl_le_get32(p + 20);
    s->shuffle = (int)bl_le_get32(p + 24);
    s->adam_steps = (long)bl_le_get64(p + 32);
    s->plan_version = (long)bl_le_get64(p + 40);
    return BL_OK;
}

/* Reads the STAGES section (after SHARDS, whose ranks and pipelines are in
 * *s): S stages, which with the pipelines make the ranks, and a stage map
 * over the model's L + 2 units (bl_ckpt_read_map), so that the embedding
 * (unit 0) lies on the first stage and the head (unit L + 1) on the last,
 * as the grid requires. Returns BL_OK or BL_ERR_FORMAT naming the field. */
static bl_status_t parse_stages(bl_ckpt_reader_t *r, bl_lm_manifest_t *s)
{
    const unsigned char *p;
    size_t len;
    bl_status_t st = bl_ckpt_read_section(r, BL_CKPT_SEC_STAGES, 0, &p, &len);
    if (st != BL_OK) {
        return st;
    }
    const uint64_t units = (uint64_t)s->shape.num_layers + 2;
    const uint64_t S = len >= 4 ? bl_le_get32(p) : 0;
    if (S < 1 || S > units || len != 4 + 4 * ((size_t)S + 1)) {
        return bl_ckpt_bad(r, "STAGES section: %zu bytes for %llu stages over %llu units", len,
                           (unsigned long long)S, (unsigned long long)units);
    }
    if (S * (uint64_t)s->pipelines != (uint64_t)s->ranks) {
        return bl_ckpt_bad(r,
                           "STAGES section: S = %llu stages, but SHARDS has P = %d ranks in D = "
                           "%d pipelines, so S = P / D = %d",
                           (unsigned long long)S, s->ranks, s->pipelines, s->ranks / s->pipelines);
    }
    st = bl_ckpt_read_map(r, "STAGES", p + 4, (uint32_t)S, (uint32_t)units, "unit", NULL);
    if (st == BL_OK) {
        s->stages = (int)S;
        s->map = p + 4;
    }
    return st;
}

/* Reads the LAYERS section: U user layers, whose parameters, with the
 * GPT-2 tensors', make the GPT2 section's count. Returns BL_OK or
 * BL_ERR_FORMAT naming the field. */
static bl_status_t parse_layers(bl_ckpt_reader_t *r, bl_lm_manifest_t *s)
{
    const unsigned char *p;
    size_t len;
    bl_status_t st = bl_ckpt_read_section(r, BL_CKPT_SEC_LAYERS, 0, &p, &len);
    if (st != BL_OK) {
        return st;
    }
    const uint32_t U = len >= 4 ? bl_le_get32(p) : UINT32_MAX;
    if (U > BL_LM_MAX_LAYERS || len != 4 + BL_LM_LAYER_BYTES * (size_t)U) {
        return bl_ckpt_bad(r, "LAYERS section: %zu bytes for %u user layers", len, U);
    }
    uint64_t total = 0;
    for (uint32_t k = 0; k < U; k++) {
        const unsigned char *e = p + 4 + BL_LM_LAYER_BYTES * (size_t)k;
        const uint64_t count = bl_le_get64(e + 8);
        if (bl_le_get32(e) > (uint32_t)s->shape.num_layers || bl_le_get32(e + 4) > 3 ||
            count > s->param_count - total) {
            return bl_ckpt_bad(r,
                               "LAYERS section: user layer %u (unit %u, flags %u, %llu "
                               "parameters) does not fit the model",
                               k, bl_le_get32(e), bl_le_get32(e + 4), (unsigned long long)count);
        }
        total += count;
    }
    s->layers = (int)U;
    s->layer = p + 4;
    return BL_OK;
}

/* Reads the FILES section (version 4, after STAGES, whose map is in *s):
 * one entry per stage of the map, each naming that stage's units and a
 * length that can hold a stage file's sections. Returns BL_OK or
 * BL_ERR_FORMAT naming the field. */
static bl_status_t parse_files(bl_ckpt_reader_t *r, bl_lm_manifest_t *s)
{
    const unsigned char *p;
    size_t len;
    bl_status_t st = bl_ckpt_read_section(r, BL_CKPT_SEC_FILES, 0, &p, &len);
    if (st != BL_OK) {
        return st;
    }
    const uint32_t S = (uint32_t)s->stages;
    if (len != 8 + BL_LM_FILE_BYTES * (size_t)S || bl_le_get32(p) != S || bl_le_get32(p + 4) != 0) {
        return bl_ckpt_bad(r, "FILES section: %zu bytes for %u stage files; the stage map has %u",
                           len, len >= 4 ? bl_le_get32(p) : 0, S);
    }
    /* The smallest stage file: its header and five sections, one piece. */
    const uint64_t least = BL_CKPT_HEADER_BYTES + 5 * BL_CKPT_SECTION_BYTES + BL_LM_SHAPE_BYTES +
                           32 + 32 + 3 * sizeof(float);
    for (uint32_t k = 0; k < S; k++) {
        const unsigned char *e = p + 8 + BL_LM_FILE_BYTES * (size_t)k;
        const uint32_t first = bl_le_get32(s->map + 4 * (size_t)k);
        const uint32_t last = bl_le_get32(s->map + 4 * ((size_t)k + 1));
        if (bl_le_get32(e) != first || bl_le_get32(e + 4) != last) {
            return bl_ckpt_bad(r,
                               "FILES section: stage file %u holds units [%u, %u); the stage map "
                               "gives stage %u units [%u, %u)",
                               k, bl_le_get32(e), bl_le_get32(e + 4), k, first, last);
        }
        if (bl_le_get64(e + 8) < least || bl_le_get64(e + 8) > (uint64_t)SIZE_MAX ||
            bl_le_get32(e + 20) != 0) {
            return bl_ckpt_bad(r, "FILES section: stage file %u of %llu bytes", k,
                               (unsigned long long)bl_le_get64(e + 8));
        }
    }
    s->files = p + 8;
    return BL_OK;
}

void bl_lm_manifest_files(const bl_lm_manifest_t *s, bl_lm_stage_file_t *files)
{
    for (int k = 0; k < s->stages; k++) {
        const unsigned char *e = s->files + BL_LM_FILE_BYTES * (size_t)k;
        files[k] = (bl_lm_stage_file_t){.first = (int)bl_le_get32(e),
                                        .last = (int)bl_le_get32(e + 4),
                                        .bytes = bl_le_get64(e + 8),
                                        .units_crc = bl_le_get32(e + 16)};
    }
}

/* Decodes the whole file (the reader is fresh) into *s. Returns BL_OK or
 * BL_ERR_FORMAT, or BL_ERR_MISMATCH for another kind of file. */
static bl_status_t parse_file(bl_ckpt_reader_t *r, bl_lm_manifest_t *s)
{
    bl_status_t st = bl_ckpt_read_header(r, BL_CKPT_KIND_LM, lm_sections);
    if (st == BL_OK) {
        st = parse_head(r, s);
    }
    const unsigned char *p;
    size_t len;
    if (st == BL_OK) {
        st = bl_ckpt_read_section(r, BL_CKPT_SEC_SHARDS, 0, &p, &len);
    }
    if (st != BL_OK) {
        return st;
    }
    uint32_t P = len >= 8 ? bl_le_get32(p) : 0, D = len >= 8 ? bl_le_get32(p + 4) : 0;
    if (P < 1 || P > MAX_RANKS || D < 1 || D > P || P % D != 0 || len != 8 + 4 * (size_t)D) {
        return bl_ckpt_bad(r, "SHARDS section: %zu bytes for %u ranks and %u pipelines", len, P, D);
    }
    long sum = 0;
    for (uint32_t i = 0; i < D; i++) {
        sum += (long)bl_le_get32(p + 8 + 4 * (size_t)i);
    }
    if (sum != s->batch) {
        return bl_ckpt_bad(r, "SHARDS section: the shards sum to %ld, not the batch %d", sum,
                           s->batch);
    }
    s->ranks = (int)P;
    s->pipelines = (int)D;
    s->shards = p + 8;
    s->stages = 0;
    s->map = NULL;
    s->layers = 0;
    s->layer = NULL;
    s->files = NULL;
    s->params = s->adam_m = s->adam_v = NULL;
    st = r->version >= 3 ? parse_stages(r, s) : BL_OK;
    if (st == BL_OK && r->version >= 3) {
        st = parse_layers(r, s);
    }
    if (st == BL_OK) {
        st = bl_ckpt_read_section(r, BL_CKPT_SEC_CONTROL, 0, &s->control, &s->control_bytes);
    }
    if (st == BL_OK && r->version >= 4) {
        st = parse_files(r, s);
        return st == BL_OK ? bl_ckpt_read_end(r) : st;
    }
    const uint32_t ids[3] = {BL_CKPT_SEC_PARAMS, BL_CKPT_SEC_ADAM_M, BL_CKPT_SEC_ADAM_V};
    const unsigned char **to[3] = {&s->params, &s->adam_m, &s->adam_v};
    for (int k = 0; k < 3 && st == BL_OK; k++) {
        st = bl_ckpt_read_section(r, ids[k], (size_t)s->param_count * sizeof(float), to[k], &len);
    }
    return st == BL_OK ? bl_ckpt_read_end(r) : st;
}

/* Checks that the saved run is this run: the same sequence length, model
 * shape, seed, batch and shuffle. Returns BL_OK, or BL_ERR_MISMATCH naming
 * the first field that differs and both values. */
static bl_status_t check_same_run(bl_lm_trainer_t *t, const char *path, const bl_lm_manifest_t *s)
{
    const bl_gpt2_config_t *c = &t->model->config;
    const bl_lm_config_t *cfg = &t->cfg;
    const struct {
        const char *name;
        long saved, mine;
    } fields[] = {
        {"sequence length T", s->seq_len, cfg->seq_len},
        {"max_seq_len maxT", s->shape.max_seq_len, c->max_seq_len},
        {"vocab_size V", s->shape.vocab_size, c->vocab_size},
        {"num_layers L", s->shape.num_layers, c->num_layers},
        {"num_heads NH", s->shape.num_heads, c->num_heads},
        {"channels C", s->shape.channels, c->channels},
        {"padded_vocab_size Vp", s->shape.padded_vocab_size, c->padded_vocab_size},
        {"batch B", s->batch, cfg->batch},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (fields[i].saved != fields[i].mine) {
            return bl_fail(t->rt, BL_ERR_MISMATCH,
                           "resume: %s was saved with %s = %ld; this run has %s = %ld", path,
                           fields[i].name, fields[i].saved, fields[i].name, fields[i].mine);
        }
    }
    if (s->seed != cfg->seed) {
        return bl_fail(t->rt, BL_ERR_MISMATCH,
                       "resume: %s was saved with seed %llu; this run has seed %llu", path,
                       (unsigned long long)s->seed, (unsigned long long)cfg->seed);
    }
    if (s->shuffle != cfg->shuffle) {
        return bl_fail(t->rt, BL_ERR_MISMATCH,
                       "resume: %s was saved with shuffle %s; this run has shuffle %s", path,
                       s->shuffle ? "on" : "off", cfg->shuffle ? "on" : "off");
    }
    /* The user layers, one by one: the same parameter count could hide
     * another list, whose parameters would land on the wrong layers. */
    const bl_gpt2_t *g = t->model;
    if (s->layer != NULL && s->layers != g->user_count) {
        return bl_fail(t->rt, BL_ERR_MISMATCH,
                       "resume: %s was saved with %d user layer(s); this run has %d", path,
                       s->layers, g->user_count);
    }
    for (int k = 0; s->layer != NULL && k < s->layers; k++) {
        const unsigned char *e = s->layer + BL_LM_LAYER_BYTES * (size_t)k;
        const bl_gpt2_user_t *u = &g->users[k];
        const uint32_t flags = bl_lm_layer_flags(&u->layer), saved = bl_le_get32(e + 4);
        if (bl_le_get32(e) != (uint32_t)u->layer.after || saved != flags ||
            bl_le_get64(e + 8) != (uint64_t)u->count) {
            return bl_fail(t->rt, BL_ERR_MISMATCH,
                           "resume: %s was saved with user layer %d %s unit %u (decay %u, %llu "
                           "parameters); this run's is %s unit %d (decay %u, %zu parameters)",
                           path, k, saved & 2 ? "inside" : "after", bl_le_get32(e), saved & 1,
                           (unsigned long long)bl_le_get64(e + 8), flags & 2 ? "inside" : "after",
                           u->layer.after, flags & 1, u->count);
        }
    }
    if (s->param_count != (uint64_t)t->model->param_count) {
        return bl_fail(t->rt, BL_ERR_MISMATCH,
                       "resume: %s holds %llu parameters; this model has %zu", path,
                       (unsigned long long)s->param_count, t->model->param_count);
    }
    return BL_OK;
}

bl_status_t bl_lm_manifest_read(bl_lm_trainer_t *t, const char *dir, bl_lm_manifest_t *s)
{
    bl_runtime_t *rt = t->rt;
    char path[PATH_MAX], other[PATH_MAX];
    memset(s, 0, sizeof *s); /* the head's check sees no LAYERS section yet */
    snprintf(path, sizeof path, "%s/%s", dir, BL_CKPT_LM_FILE);
    snprintf(other, sizeof other, "%s/%s", dir, BL_CKPT_MANIFEST_FILE);
    if (access(path, F_OK) != 0 && access(other, F_OK) == 0) {
        return bl_fail(rt, BL_ERR_MISMATCH,
                       "checkpoint %s is the layer trainer's (%s), not the language-model "
                       "trainer's",
                       dir, BL_CKPT_MANIFEST_FILE);
    }
    /* The most a file of this model holds (a version 3 one, with the
     * floats): the headers, the small sections (the stage map has at most
     * one stage a unit), the largest policy state and three arrays of the
     * parameters. It is mapped, so only the pages read are. */
    const size_t units = (size_t)t->model->config.num_layers + 2;
    const size_t max = BL_CKPT_HEADER_BYTES + 9 * BL_CKPT_SECTION_BYTES + BL_LM_SHAPE_BYTES +
                       BL_LM_STATE_BYTES + 8 + 4 * (size_t)MAX_RANKS + 8 + 4 * units + 4 +
                       BL_LM_LAYER_BYTES * BL_LM_MAX_LAYERS + BL_CKPT_CONTROL_MAX +
                       3 * t->model->param_count * sizeof(float);
    unsigned char *bytes = NULL;
    size_t len = 0;
    bl_status_t st = bl_ckpt_map_file(rt, path, max, &bytes, &len);
    bl_ckpt_reader_t r = {.rt = rt, .name = path, .bytes = bytes, .len = len};
    if (st == BL_OK) {
        st = bl_ckpt_read_header(&r, BL_CKPT_KIND_LM, lm_sections);
    }
    if (st == BL_OK) {
        st = parse_head(&r, s);
    }
    if (st == BL_OK) {
        st = check_same_run(t, path, s);
    }
    if (st == BL_OK) {
        r = (bl_ckpt_reader_t){.rt = rt, .name = path, .bytes = bytes, .len = len};
        st = parse_file(&r, s);
    }
    if (st == BL_OK) {
        st = check_same_run(t, path, s);
    }
    if (st == BL_OK) {
        s->bytes = bytes;
        s->len = len;
    } else {
        bl_ckpt_unmap_file(bytes, len);
        memset(s, 0, sizeof *s);
    }
    return st;
}

void bl_lm_manifest_close(bl_lm_manifest_t *s)
{
    bl_ckpt_unmap_file(s->bytes, s->len);
    s->bytes = NULL;
    s->len = 0;
}
