/* The language-model trainer's checkpoints (ballast.h:
 * bl_lm_trainer_save_checkpoint, bl_lm_trainer_resume). Every replica holds
 * the same parameters and AdamW state, so rank 0 writes them all into one
 * file, DIR/ckpt-<step>/lm.bin, of the checkpoint format of runtime/io
 * (checkpoint.h describes its sections; checkpoint_file.h gives the
 * reader, the atomic one-file save, the pruning and the finder). A resume
 * takes the newest checkpoint whose file is complete and intact, skipping
 * damaged ones with a warning, and refuses one of another run (another
 * model shape, sequence length, seed, batch or shuffle, or a layer
 * trainer's) with BL_ERR_MISMATCH naming the field. Each rank then reads
 * the file itself, checks every section before it changes anything, and
 * the ranks agree before the state is applied. Under ZeRO-1 (lm_zero.h),
 * where each rank holds a slice of the AdamW moments, rank 0 gathers the
 * slices for the save, and on a resume each rank takes its slice from the
 * file, so the file is the same whichever way it is written or read. With
 * pipelines, a save first makes every rank's model whole
 * (bl_lm_make_whole), and it saves the stage map in force and the stage
 * policy's learned state with the shard policy's. A resume on as many
 * stages continues the saved map (every rank holds the whole model after
 * the load, so nothing moves) and the policies' state when their kinds
 * match; on another number of stages, or from a file written before maps
 * were saved (format version 2), the run keeps its own map (the config's or
 * the balanced one). An info line says which. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint_file.h"
#include "consistency.h"
#include "lm_impl.h"
#include "policy_state.h"
#include "wait.h"

/* The sections of lm.bin, in file order (checkpoint.h): 9 since version 3
 * of the format added STAGES and LAYERS, 7 in a version 2 file. */
#define LM_SECTIONS    9
#define LAYER_BYTES    16u /* a LAYERS entry: u32 unit, u32 flags, u64 parameters */
#define GPT2_BYTES     32u
#define LM_STATE_BYTES 48u
#define MAX_RANKS      (1u << 20)
/* The file's header and its first two sections: enough to tell whether it is
 * this run's before the rest is read. */
#define HEAD_BYTES (BL_CKPT_HEADER_BYTES + 2 * BL_CKPT_SECTION_BYTES + GPT2_BYTES + LM_STATE_BYTES)

/* A checkpoint file decoded in place: its pointers point into the file's
 * bytes, at any alignment, so the floats are copied out with memcpy. */
typedef struct lm_saved {
    bl_gpt2_config_t shape;
    uint64_t param_count;
    long step;
    uint64_t seed;
    int batch, seq_len, shuffle;
    long adam_steps;
    long plan_version;
    int ranks, pipelines;
    const unsigned char *shards; /* pipelines × u32 */
    int stages;                  /* S, or 0 in a file without a stage map (version 2) */
    const unsigned char *map;    /* (S + 1) × u32, checked, or NULL */
    int layers;                  /* U user layers (0 in a version 2 file) */
    const unsigned char *layer;  /* U × LAYER_BYTES, or NULL */
    const unsigned char *control;
    size_t control_bytes;
    const unsigned char *params, *adam_m, *adam_v; /* param_count floats each */
} lm_saved_t;

/* ---- Encoding --------------------------------------------------------- */

static void put_shape(unsigned char *p, const bl_gpt2_config_t *c, size_t param_count)
{
    const int v[6] = {c->max_seq_len, c->vocab_size, c->num_layers,
                      c->num_heads,   c->channels,   c->padded_vocab_size};
    for (int i = 0; i < 6; i++) {
        bl_le_put32(p + 4 * i, (uint32_t)v[i]);
    }
    bl_le_put64(p + 24, (uint64_t)param_count);
}

/* A user layer's LAYERS flags: bit 0 its decay, bit 1 inside its block. */
static uint32_t layer_flags(const bl_lm_layer_t *l)
{
    return (uint32_t)(l->decay != 0) | (uint32_t)(l->inside != 0) << 1;
}

/* ---- Decoding --------------------------------------------------------- */

/* The sections that lm.bin holds in each version of the format: none in
 * version 1, 7 in version 2, and 9 from version 3 on (STAGES, LAYERS). */
static const uint32_t lm_sections[BL_CKPT_VERSION] = {0, 7, LM_SECTIONS};

/* Reads the GPT2 and LM_STATE sections (the reader is past the header) into
 * *s. Returns BL_OK or BL_ERR_FORMAT. */
static bl_status_t parse_head(bl_ckpt_reader_t *r, lm_saved_t *s)
{
    const unsigned char *p;
    size_t len;
    bl_status_t st = bl_ckpt_read_section(r, BL_CKPT_SEC_GPT2, GPT2_BYTES, &p, &len);
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
    st = bl_ckpt_read_section(r, BL_CKPT_SEC_LM_STATE, LM_STATE_BYTES, &p, &len);
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
static bl_status_t parse_stages(bl_ckpt_reader_t *r, lm_saved_t *s)
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
static bl_status_t parse_layers(bl_ckpt_reader_t *r, lm_saved_t *s)
{
    const unsigned char *p;
    size_t len;
    bl_status_t st = bl_ckpt_read_section(r, BL_CKPT_SEC_LAYERS, 0, &p, &len);
    if (st != BL_OK) {
        return st;
    }
    const uint32_t U = len >= 4 ? bl_le_get32(p) : UINT32_MAX;
    if (U > BL_LM_MAX_LAYERS || len != 4 + LAYER_BYTES * (size_t)U) {
        return bl_ckpt_bad(r, "LAYERS section: %zu bytes for %u user layers", len, U);
    }
    uint64_t total = 0;
    for (uint32_t k = 0; k < U; k++) {
        const unsigned char *e = p + 4 + LAYER_BYTES * (size_t)k;
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

/* Decodes the whole file (the reader is fresh) into *s. Returns BL_OK or
 * BL_ERR_FORMAT, or BL_ERR_MISMATCH for another kind of file. */
static bl_status_t parse_file(bl_ckpt_reader_t *r, lm_saved_t *s)
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
    st = r->version >= 3 ? parse_stages(r, s) : BL_OK;
    if (st == BL_OK && r->version >= 3) {
        st = parse_layers(r, s);
    }
    if (st == BL_OK) {
        st = bl_ckpt_read_section(r, BL_CKPT_SEC_CONTROL, 0, &s->control, &s->control_bytes);
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
static bl_status_t check_same_run(bl_lm_trainer_t *t, const char *path, const lm_saved_t *s)
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
        const unsigned char *e = s->layer + LAYER_BYTES * (size_t)k;
        const bl_gpt2_user_t *u = &g->users[k];
        const uint32_t flags = layer_flags(&u->layer), saved = bl_le_get32(e + 4);
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

/* Reads the first HEAD_BYTES bytes of path (fewer when it is shorter). */
static bl_status_t read_head(bl_runtime_t *rt, const char *path, unsigned char *head, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return bl_fail(rt, BL_ERR_IO, "checkpoint file %s: cannot open it", path);
    }
    *len = fread(head, 1, HEAD_BYTES, f);
    fclose(f);
    return BL_OK;
}

/* Reads and checks the checkpoint in the directory dir: first its head,
 * which must be this run's (else BL_ERR_MISMATCH, without reading the
 * rest), then the whole file, every section of it. On success *bytes (from
 * the runtime's allocator; the caller frees it) holds the file and *s its
 * decoding. A directory of the layer trainer's is BL_ERR_MISMATCH. */
static bl_status_t read_checkpoint(bl_lm_trainer_t *t, const char *dir, unsigned char **bytes,
                                   lm_saved_t *s)
{
    bl_runtime_t *rt = t->rt;
    char path[PATH_MAX], other[PATH_MAX];
    *bytes = NULL;
    memset(s, 0, sizeof *s); /* the head's check sees no LAYERS section yet */
    snprintf(path, sizeof path, "%s/%s", dir, BL_CKPT_LM_FILE);
    snprintf(other, sizeof other, "%s/%s", dir, BL_CKPT_MANIFEST_FILE);
    if (access(path, F_OK) != 0 && access(other, F_OK) == 0) {
        return bl_fail(rt, BL_ERR_MISMATCH,
                       "checkpoint %s is the layer trainer's (%s), not the language-model "
                       "trainer's",
                       dir, BL_CKPT_MANIFEST_FILE);
    }
    unsigned char head[HEAD_BYTES];
    size_t len = 0;
    bl_status_t st = read_head(rt, path, head, &len);
    bl_ckpt_reader_t r = {.rt = rt, .name = path, .bytes = head, .len = len};
    if (st == BL_OK) {
        st = bl_ckpt_read_header(&r, BL_CKPT_KIND_LM, lm_sections);
    }
    if (st == BL_OK) {
        st = parse_head(&r, s);
    }
    if (st == BL_OK) {
        st = check_same_run(t, path, s);
    }
    if (st != BL_OK) {
        return st;
    }
    /* The most a file of this model holds: the headers, the small sections
     * (the stage map has at most one stage a unit), the largest policy state
     * and three arrays of the parameters. */
    const size_t units = (size_t)t->model->config.num_layers + 2;
    const size_t max = BL_CKPT_HEADER_BYTES + LM_SECTIONS * BL_CKPT_SECTION_BYTES + GPT2_BYTES +
                       LM_STATE_BYTES + 8 + 4 * (size_t)MAX_RANKS + 8 + 4 * units + 4 +
                       LAYER_BYTES * BL_LM_MAX_LAYERS + BL_CKPT_CONTROL_MAX +
                       3 * t->model->param_count * sizeof(float);
    st = bl_ckpt_read_whole(rt, path, max, bytes, &len);
    if (st == BL_OK) {
        r = (bl_ckpt_reader_t){.rt = rt, .name = path, .bytes = *bytes, .len = len};
        st = parse_file(&r, s);
    }
    if (st == BL_OK) {
        st = check_same_run(t, path, s);
    }
    if (st != BL_OK) {
        bl_mem_free(bl_rt_allocator(rt), *bytes);
        *bytes = NULL;
    }
    return st;
}

/* The finder's check (rank 0): the checkpoint is this run's and intact. */
static bl_status_t check_checkpoint(bl_runtime_t *rt, const char *dir, void *arg)
{
    unsigned char *bytes = NULL;
    lm_saved_t s;
    bl_status_t st = read_checkpoint(arg, dir, &bytes, &s);
    bl_mem_free(bl_rt_allocator(rt), bytes);
    return st;
}

/* ---- Saving ------------------------------------------------------------ */

/* Packs the learned state of the shard policy and of the stage policy
 * (when each runs) and the shard controller's window in progress into *out
 * (rank 0; NULL with 0 bytes elsewhere), as the layer trainer's control.c
 * does. The stage controller's window is not saved: a resumed run observes
 * its units afresh after the warm-up (lm_restage.c). Collective. */
static bl_status_t collect_control(bl_lm_trainer_t *t, unsigned char **out, size_t *n)
{
    bl_runtime_t *rt = t->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    const int P = rt->size;
    *out = NULL;
    *n = 0;
    bl_status_t st = bl_balancer_settle(&t->balancer); /* the records in flight join the window */
    if (st != BL_OK || rt->rank != 0) {
        return st;
    }
    bl_control_windows_t w = {.ranks = P, .layers = 0};
    double *shard = NULL;
    if (t->balancer.controller_on) {
        w.shard_count = BL_CONTROLLER_WINDOW_DOUBLES(P);
        shard = bl_mem_array(a, w.shard_count, sizeof *shard);
        if (shard == NULL) {
            return bl_fail(rt, BL_ERR_NO_MEM, "no memory for the control window of %d ranks", P);
        }
        bl_controller_window_save(&t->balancer.ctl, shard);
        w.shard = shard;
    }
    st = bl_policy_state_collect(rt, t->balancer.controller_on ? t->balancer.ctl.policy : NULL,
                                 t->restager.on ? t->restager.policy : NULL, &w, out, n);
    bl_mem_free(a, shard);
    return st;
}

bl_status_t bl_lm_trainer_save_checkpoint(bl_lm_trainer_t *t, const char *dir, int keep, char *path,
                                          size_t n)
{
    if (t == NULL || dir == NULL || keep < 0 || (path == NULL && n > 0)) {
        return t == NULL ? BL_ERR_INVALID_ARG
                         : bl_fail(t->rt, BL_ERR_INVALID_ARG,
                                   "save checkpoint: NULL directory or path, or keep %d < 0", keep);
    }
    bl_runtime_t *rt = t->rt;
    const bl_allocator_t *a = bl_rt_allocator(rt);
    const bl_gpt2_t *g = t->model;
    const int D = t->plan.groups; /* the pipelines, each with its shard */
    const int S = t->plan.stages; /* the stages of the map */
    char scratch[4096];
    char *where = path != NULL ? path : scratch;
    double t0 = bl_now_seconds();
    unsigned char *control = NULL, *shards = NULL, *stages = NULL;
    size_t control_bytes = 0;
    bl_status_t st = collect_control(t, &control, &control_bytes);
    if (st == BL_OK && rt->rank == 0) {
        shards = bl_mem_array(a, 8 + 4 * (size_t)D, 1);
        stages = bl_mem_array(a, 4 + 4 * ((size_t)S + 1), 1);
        if (shards == NULL || stages == NULL) {
            st = bl_fail(rt, BL_ERR_NO_MEM, "no memory for a checkpoint's shards and stage map");
        }
    }
    st = bl_agree(rt, st, BL_ERR_NO_MEM, "gathering the controllers' state");
    if (st == BL_OK) {
        st = bl_lm_make_whole(t); /* with pipelines, each stage updated its own units */
    }
    if (st == BL_OK) {
        st = bl_lm_check_replicas(t, "replicas at a checkpoint");
    }
    bl_lm_state_t host = {0}; /* downloaded by the check from a device */
    if (st == BL_OK) {
        st = bl_lm_host_state(t, &host);
    }
    /* Under ZeRO-1 each rank holds a slice of the moments: rank 0 gathers
     * them into two temporary arrays of param_count floats (8 bytes a
     * parameter, freed after the write), so lm.bin keeps its format. */
    float *gathered_m = NULL, *gathered_v = NULL;
    if (st == BL_OK && t->zero != NULL) {
        st = bl_lm_zero_gather_moments(t->zero, 0, &gathered_m, &gathered_v);
        host.adam_m = gathered_m;
        host.adam_v = gathered_v;
    }
    if (st == BL_OK) {
        unsigned char shape[GPT2_BYTES], state[LM_STATE_BYTES] = {0};
        unsigned char layers[4 + LAYER_BYTES * BL_LM_MAX_LAYERS];
        put_shape(shape, &g->config, g->param_count);
        bl_le_put32(layers, (uint32_t)g->user_count);
        for (int k = 0; k < g->user_count; k++) {
            unsigned char *e = layers + 4 + LAYER_BYTES * (size_t)k;
            bl_le_put32(e, (uint32_t)g->users[k].layer.after);
            bl_le_put32(e + 4, layer_flags(&g->users[k].layer));
            bl_le_put64(e + 8, (uint64_t)g->users[k].count);
        }
        bl_le_put64(state, (uint64_t)t->step);
        bl_le_put64(state + 8, t->cfg.seed);
        bl_le_put32(state + 16, (uint32_t)t->cfg.batch);
        bl_le_put32(state + 20, (uint32_t)t->cfg.seq_len);
        bl_le_put32(state + 24, (uint32_t)t->cfg.shuffle);
        bl_le_put64(state + 32, (uint64_t)g->adam_steps);
        bl_le_put64(state + 40, (uint64_t)t->plan.version);
        if (shards != NULL) {
            bl_le_put32(shards, (uint32_t)rt->size);
            bl_le_put32(shards + 4, (uint32_t)D);
            for (int d = 0; d < D; d++) {
                bl_le_put32(shards + 8 + 4 * (size_t)d, (uint32_t)t->plan.shards[d]);
            }
        }
        if (stages != NULL) {
            /* The map in force: every rank switched to it together. */
            bl_le_put32(stages, (uint32_t)S);
            for (int i = 0; i <= S; i++) {
                bl_le_put32(stages + 4 + 4 * (size_t)i, (uint32_t)t->plan.first[i]);
            }
        }
        if (control_bytes > BL_CKPT_CONTROL_MAX) {
            bl_log(rt, BL_LOG_WARN,
                   "checkpoint: the policy's state (%zu bytes) is over %u bytes; saved without "
                   "it, so a resume starts the policy afresh",
                   control_bytes, BL_CKPT_CONTROL_MAX);
            control_bytes = 0;
        }
        /* The host arrays: the model's own, or a device's twin. */
        const size_t floats = g->param_count * sizeof(float);
        const bl_ckpt_section_t sections[LM_SECTIONS] = {
            {BL_CKPT_SEC_GPT2, shape, sizeof shape},
            {BL_CKPT_SEC_LM_STATE, state, sizeof state},
            {BL_CKPT_SEC_SHARDS, shards, 8 + 4 * (size_t)D},
            {BL_CKPT_SEC_STAGES, stages, 4 + 4 * ((size_t)S + 1)},
            {BL_CKPT_SEC_LAYERS, layers,
             sizeof layers - LAYER_BYTES * (size_t)(BL_LM_MAX_LAYERS - g->user_count)},
            {BL_CKPT_SEC_CONTROL, control, control_bytes},
            {BL_CKPT_SEC_PARAMS, host.params, floats},
            {BL_CKPT_SEC_ADAM_M, host.adam_m, floats},
            {BL_CKPT_SEC_ADAM_V, host.adam_v, floats},
        };
        st = bl_ckpt_save_file(rt, dir, t->step, BL_CKPT_LM_FILE, BL_CKPT_KIND_LM, sections,
                               LM_SECTIONS, keep, where, path != NULL ? n : sizeof scratch);
    }
    bl_mem_free(a, control);
    bl_mem_free(a, shards);
    bl_mem_free(a, stages);
    bl_mem_free(a, gathered_m);
    bl_mem_free(a, gathered_v);
    if (st == BL_OK) {
        /* The parameters and both moments take 4 bytes each. */
        bl_log(rt, BL_LOG_INFO, "checkpoint %s: step %ld, %.1f MB in %.1f ms", where, t->step,
               12.0 * (double)g->param_count / 1e6, 1e3 * (bl_now_seconds() - t0));
    }
    return st;
}

/* ---- Resuming ------------------------------------------------------------ */

/* Writes the saved shards as "a,b,c" into out (n bytes). */
static void format_saved_shards(const lm_saved_t *s, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int d = 0; d < s->pipelines && used < n; d++) {
        int k = snprintf(out + used, n - used, "%s%u", d > 0 ? "," : "",
                         bl_le_get32(s->shards + 4 * (size_t)d));
        used += k > 0 ? (size_t)k : 0;
    }
}

/* Continues the saved plan, as the layer trainer does: its plan version,
 * and on as many ranks and pipelines its shards, which win over the
 * config's (one info line names a configured plan that is not used).
 * Shards outside this run's caps give way to the config's plan, and on
 * another number of ranks or pipelines the saved shards do not apply and
 * the trainer keeps its first plan; an info line says so. */
static void adopt_plan(bl_lm_trainer_t *t, const lm_saved_t *s, const char *path)
{
    bl_plan_t *p = &t->plan;
    char theirs[512], mine[512];
    format_saved_shards(s, theirs, sizeof theirs);
    bl_plan_format_shards(p, mine, sizeof mine);
    p->version = s->plan_version;
    if (s->ranks != t->rt->size || s->pipelines != p->groups) {
        bl_log(t->rt, BL_LOG_INFO,
               "resume: %s's shard plan %s was saved on %d ranks; this run has %d rank%s, so "
               "the plan starts as %s (plan v%ld)",
               path, theirs, s->ranks, t->rt->size, t->rt->size == 1 ? "" : "s", mine, p->version);
        return;
    }
    int same = 1, fits = 1;
    for (int d = 0; d < p->groups; d++) {
        long v = (long)bl_le_get32(s->shards + 4 * (size_t)d);
        same = same && v == p->shards[d];
        fits = fits && (p->shard_min == NULL || (v >= p->shard_min[d] && v <= p->shard_max[d]));
    }
    if (same) {
        return;
    }
    if (!fits) {
        bl_log(t->rt, BL_LOG_INFO,
               "resume: %s's shard plan %s lies outside this run's shard caps; the plan starts "
               "as %s",
               path, theirs, mine);
        return;
    }
    if (t->cfg.plan.shards != NULL) {
        bl_log(t->rt, BL_LOG_INFO,
               "resume: %s's shard plan %s (plan v%ld) is kept; the configured plan %s is not "
               "used",
               path, theirs, s->plan_version, mine);
    }
    for (int d = 0; d < p->groups; d++) {
        p->shards[d] = (long)bl_le_get32(s->shards + 4 * (size_t)d);
    }
    t->offset = bl_plan_offset(p, t->grid.layout.replica);
    t->local = (int)p->shards[t->grid.layout.replica];
}

/* Continues the saved stage map on as many stages (bl_ckpt_adopt_map, as the
 * layer trainer does): this stage then owns its units under it. Every rank
 * loaded the whole model, so no parameters move. A file without a map
 * (version 2), or a map of another number of stages, leaves the run's own
 * map (the configured or the balanced one), with an info line. Local; every
 * rank decides the same from the same file. */
static void adopt_map(bl_lm_trainer_t *t, const lm_saved_t *s, const char *path)
{
    /* At most one stage a unit of this model (parse_stages). */
    int saved[s->stages + 1];
    for (int i = 0; s->map != NULL && i <= s->stages; i++) {
        saved[i] = (int)bl_le_get32(s->map + 4 * (size_t)i);
    }
    if (bl_ckpt_adopt_map(t->rt, path, s->map != NULL ? saved : NULL, s->stages, t->plan.first,
                          t->plan.stages,
                          t->cfg.plan.stage_first != NULL ? "configured" : "balanced")) {
        bl_lm_grid_set_map(&t->grid, t->model, t->plan.first);
    }
}

/* Rank 0 loads the learned state of the shard policy and of the stage
 * policy, and the shard controller's window in progress, when they fit this
 * run (the same policy kind, ranks and stages; bl_policy_state_restore says
 * in an info line which start afresh and why); the first steps after the
 * resume are a warm-up that is not observed, as at a start. Local. */
static void restore_control(bl_lm_trainer_t *t, const lm_saved_t *s, const char *path)
{
    bl_runtime_t *rt = t->rt;
    bl_balancer_t *b = &t->balancer;
    b->ctl.warm_until = s->step + BL_CONTROL_WARMUP_STEPS;
    if (rt->rank != 0) {
        return;
    }
    bl_control_windows_t w;
    bl_policy_state_restore(rt, b->controller_on ? b->ctl.policy : NULL,
                            t->restager.on ? t->restager.policy : NULL, s->control,
                            s->control_bytes, path, &w);
    const size_t count = BL_CONTROLLER_WINDOW_DOUBLES(rt->size);
    int fits = 0;
    if (b->controller_on && w.ranks == rt->size && w.shard_count == count) {
        double *shard = bl_mem_array(bl_rt_allocator(rt), count, sizeof *shard);
        if (shard != NULL) {
            memcpy(shard, w.shard, count * sizeof *shard);
            fits = bl_controller_window_load(&b->ctl, shard);
        }
        bl_mem_free(bl_rt_allocator(rt), shard);
    }
    if (w.shard_count > 0 && !fits) {
        bl_log(rt, BL_LOG_INFO,
               "resume: %s's control window in progress does not fit this run (%d ranks); it "
               "starts empty",
               path, rt->size);
    }
}

bl_status_t bl_lm_trainer_resume(bl_lm_trainer_t *t, const char *dir, int *resumed)
{
    if (t == NULL || dir == NULL || resumed == NULL) {
        return t == NULL ? BL_ERR_INVALID_ARG
                         : bl_fail(t->rt, BL_ERR_INVALID_ARG, "resume: NULL argument");
    }
    bl_runtime_t *rt = t->rt;
    *resumed = 0;
    char path[PATH_MAX];
    int found = 0;
    bl_status_t st = bl_ckpt_find_valid(rt, dir, check_checkpoint, t, 1, path, sizeof path, &found);
    if (st != BL_OK || !found) {
        return st;
    }
    /* Every rank reads the file; a failure anywhere fails everywhere before
     * anything changes. */
    unsigned char *bytes = NULL;
    lm_saved_t s;
    st = bl_agree(rt, read_checkpoint(t, path, &bytes, &s), BL_ERR_IO, "the resume");
    if (st == BL_OK && t->zero != NULL) {
        /* ZeRO-1: every rank takes its slice of the moments from the file
         * it read (whether it was written with ZeRO-1 or without, on any
         * number of ranks: the file holds the whole arrays). */
        bl_lm_zero_put_state(t->zero, s.params, s.adam_m, s.adam_v);
    } else if (st == BL_OK) {
        /* Uploaded to a device; a failure there fails every rank. */
        st = bl_agree(rt, bl_lm_put_state(t, s.params, s.adam_m, s.adam_v), BL_ERR_CUDA,
                      "loading the checkpoint's state");
    }
    if (st == BL_OK) {
        bl_gpt2_t *g = t->model;
        g->adam_steps = s.adam_steps;
        t->step = s.step;
        t->whole_at = s.step; /* every rank loaded the whole model */
        bl_log(rt, BL_LOG_INFO, "resumed from %s at step %ld (saved on %d ranks)", path, s.step,
               s.ranks);
        adopt_plan(t, &s, path);
        adopt_map(t, &s, path);
        restore_control(t, &s, path);
        *resumed = 1;
    }
    bl_mem_free(bl_rt_allocator(rt), bytes);
    return st;
}
