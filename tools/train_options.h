/* ballast-train's command line: parsing and validation, separate from the
 * program so tests can drive it. */
#ifndef BL_TRAIN_OPTIONS_H
#define BL_TRAIN_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "ballast.h"
#include "lm_options.h"

#define TRAIN_MAX_LAYERS     64
#define TRAIN_MAX_RANKS      4096 /* --shards values */
#define TRAIN_MAX_SLOWDOWNS  16
#define TRAIN_MAX_STAGE_PLAN 16 /* --stages-at maps */

typedef struct train_options {
    const char *data_dir;         /* holds {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] */
    int hidden[TRAIN_MAX_LAYERS]; /* hidden widths of the ReLU MLP */
    int hidden_count;
    int classes; /* --classes: labels are below it; 0: the largest label + 1 */
    int batch;
    float lr;
    float momentum;
    float weight_decay;
    long epochs; /* used when steps < 0 */
    long steps;  /* -1: from epochs */
    uint64_t seed;
    int shuffle;
    int node_reduce;                /* --node-reduce: 1 on (default), 0 off */
    int devices[TRAIN_MAX_RANKS];   /* --device: a bl_device_kind_t per rank, or one for all */
    int device_count;               /* 1 (default: cpu for every rank) or the job's ranks */
    int nccl;                       /* --nccl: 1 on (default), 0 off */
    int data_on_device;             /* --data-on-device: 1 on (default), 0 off */
    int threads;                    /* 0: leave BLAS as it is */
    int shards[TRAIN_MAX_RANKS];    /* --shards: samples of each pipeline's (rank's) slice */
    int shard_count;                /* 0: an even split */
    int shard_min[TRAIN_MAX_RANKS]; /* --shard-min: per pipeline (rank) */
    int shard_min_count;
    int shard_max[TRAIN_MAX_RANKS]; /* --shard-max */
    int shard_max_count;
    int dp;                            /* --dp: data-parallel groups; 0: ranks / pp */
    int pp;                            /* --pp: pipeline stages (default 1) */
    int micro_batches;                 /* --micro-batches (default 1) */
    bl_schedule_t schedule;            /* --schedule (default 1f1b) */
    int stage_local;                   /* --stage-memory local (1, default) or whole (0) */
    int stage_first[TRAIN_MAX_LAYERS]; /* --stages: each stage's first layer */
    int stage_count;                   /* 0: balanced by cost */
    int stages_end;                    /* one past the last layer --stages covers */
    /* --stages-at STEP:MAP: the scripted stage plan; map k's first layers
     * are stage_plan_first[k · pp …] once parsing ends */
    long stage_plan_steps[TRAIN_MAX_STAGE_PLAN];
    int stage_plan_first[TRAIN_MAX_STAGE_PLAN * TRAIN_MAX_LAYERS];
    int stage_plan_stages[TRAIN_MAX_STAGE_PLAN]; /* stages of map k */
    int stage_plan_end[TRAIN_MAX_STAGE_PLAN];    /* one past the last layer map k covers */
    int stage_plan_count;
    double repartition_horizon;   /* --repartition-horizon (steps) */
    double repartition_threshold; /* --repartition-threshold */
    double bucket_mb;             /* gradient all-reduce bucket (MiB) */
    const char *policy;           /* none|static|proportional|bandit|rl */
    int rebalance_every;
    const char *policy_file;
    const char *telemetry_path;
    const char *trace_path;
    bl_slowdown_t slowdowns[TRAIN_MAX_SLOWDOWNS];
    int slowdown_count;
    const char *checkpoint_dir; /* --checkpoint-dir */
    long checkpoint_every;      /* --checkpoint-every: steps; 0: only at the end */
    int keep;                   /* --keep: newest checkpoints kept; 0: all */
    int resume;                 /* --resume */
    double timeout_s;           /* --timeout: seconds a step's wait may take; 0: none */
    double mem_limit_bytes;     /* --mem-limit: bytes a rank may account for; 0: the cgroup's */
    const char *init_params;
    const char *save_params;
    double progress_seconds; /* between progress lines */
    long eval_every;         /* epochs between test-set evaluations; 0: only at the end */
    int quiet;
    int help;
    lm_options_t lm; /* --model gpt2 and its flags */
} train_options_t;

/* Parses argv. Returns 0 on success (o->help set for --help), or -1 with a
 * one-line message in err that names the flag and what is wrong. */
int train_options_parse(int argc, char **argv, train_options_t *o, char *err, size_t errlen);

/* Layers of the model the options describe: dense + ReLU per hidden
 * width, then the output dense layer; for --model gpt2, its pipeline units
 * (the embedding, the blocks, the head). */
int train_options_layer_count(const train_options_t *o);

/* Checks what depends on the job's size: --dp × --pp must be the ranks,
 * --shards must give one size per pipeline and sum to --batch. 0, or -1
 * with err naming the flag. */
/* The device of `rank` (bl_device_kind_t) as --device gave it. */
int train_options_device(const train_options_t *o, int rank);

int train_options_check_ranks(const train_options_t *o, int ranks, char *err, size_t errlen);

/* The --help text. */
const char *train_options_usage(void);

#endif /* BL_TRAIN_OPTIONS_H */
