/* ballast-train: trains a ReLU MLP on an IDX dataset through the public API,
 * printing progress and a final summary line. The program (not the library)
 * decides to exit: 0 success, 1 run-time failure, 2 bad usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ballast.h"
#include "lm_train.h"
#include "run_hooks.h"
#include "train_options.h"

#define LOSS_WINDOW 100 /* the summary's train_loss: mean of the last steps */

typedef struct progress {
    const train_options_t *opt;
    int rank;              /* only rank 0 prints */
    bl_trainer_t *trainer; /* for --eval-every */
    bl_dataset_t *test_set;
    bl_status_t eval_status; /* a failed evaluation stops the run */
    long total_steps;
    int batch;
    double start;       /* wall clock at the first step */
    double last_print;  /* wall clock of the last progress line */
    long last_step;     /* steps done at the last line */
    double window_loss; /* loss summed since the last line */
    double recent[LOSS_WINDOW];
    long done;
    int tty;     /* stdout is a terminal: one line, redrawn in place */
    int pending; /* a redrawn line is on screen without its newline */
    bl_runtime_t *rt;
    long first_step;   /* the step this process started from (a resume's) */
    run_hooks_t hooks; /* the test hooks, the stop on a signal, the periodic checkpoints */
} progress_t;

/* The trainer's own save, for the periodic checkpoints. */
static bl_status_t save_periodic(void *arg)
{
    const progress_t *p = arg;
    return bl_trainer_save_checkpoint(p->trainer, p->opt->checkpoint_dir, p->opt->keep, NULL, 0);
}

/* Progress is redrawn in place only on the user's terminal. Under an MPI
 * launcher a rank's stdout is the launcher's pseudo-terminal or pipe,
 * whatever the launcher's own output is (a log file, say), so there it is
 * one line per report. */
static int redraws_in_place(void)
{
    static const char *const launched[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                           "SLURM_STEP_ID"};
    for (size_t i = 0; i < sizeof launched / sizeof launched[0]; i++) {
        if (getenv(launched[i]) != NULL) {
            return 0;
        }
    }
    return isatty(STDOUT_FILENO);
}

/* Ends a line redrawn in place before anything else is printed. */
static void end_progress_line(progress_t *p)
{
    if (p->pending) {
        putchar('\n');
        p->pending = 0;
    }
}

static void format_duration(double seconds, char *out, size_t n)
{
    long s = (long)(seconds + 0.5);
    if (s >= 3600) {
        snprintf(out, n, "%ldh%02ldm", s / 3600, s / 60 % 60);
    } else if (s >= 60) {
        snprintf(out, n, "%ldm%02lds", s / 60, s % 60);
    } else {
        snprintf(out, n, "%lds", s);
    }
}

static int on_step(const bl_step_info_t *info, void *arg)
{
    progress_t *p = arg;
    /* Before anything else: the test hooks, the agreement to stop on a
     * signal, the periodic checkpoint. */
    if (run_hooks_between_steps(&p->hooks, info->step)) {
        p->done++;
        return 1;
    }
    double now = MPI_Wtime();
    p->recent[p->done % LOSS_WINDOW] = info->loss;
    p->done++;
    p->window_loss += info->loss;
    int last = p->done == p->total_steps;
    if (p->opt->eval_every > 0 && !last &&
        p->done % (info->steps_per_epoch * p->opt->eval_every) == 0) {
        double loss = 0.0, accuracy = 0.0;
        p->eval_status = bl_trainer_evaluate(p->trainer, p->test_set, &loss, &accuracy);
        if (p->eval_status != BL_OK) {
            return 1;
        }
        /* Evaluation is not training: shift the clocks past it so samples/s
         * and the ETA count training time only. */
        double spent = MPI_Wtime() - now;
        p->start += spent;
        p->last_print += spent;
        now += spent;
        if (p->rank != 0) {
            return 0;
        }
        end_progress_line(p);
        printf("eval: epoch %ld test_accuracy=%.4f test_loss=%.6f\n", info->epoch + 1, accuracy,
               loss);
        fflush(stdout);
    }
    if (p->rank != 0 || p->opt->quiet ||
        (!last && now - p->last_print < p->opt->progress_seconds)) {
        return 0;
    }
    long steps = p->done - p->last_step;
    double rate = (double)steps * p->batch / (now - p->last_print);
    char eta[32];
    format_duration((double)(p->total_steps - p->done) / (double)(p->done - p->first_step) *
                        (now - p->start),
                    eta, sizeof eta);
    long epochs = (p->total_steps + info->steps_per_epoch - 1) / info->steps_per_epoch;
    /* What the balancer knows: the load-balance efficiency and the policy's
     * latest action (and, for shards, the plan version). */
    char extra[96] = "";
    size_t used = 0;
    if (info->lb_efficiency > 0.0) {
        used += (size_t)snprintf(extra, sizeof extra, " balance %.2f", info->lb_efficiency);
    }
    if (strcmp(p->opt->policy, "none") != 0 && used < sizeof extra) {
        snprintf(extra + used, sizeof extra - used, " plan v%ld%s%s", info->plan_version,
                 info->decision != NULL ? " " : "", info->decision != NULL ? info->decision : "");
    }
    /* On a terminal the line is redrawn in place; in a log, one per line. */
    printf("%sstep %ld/%ld epoch %ld/%ld loss %.4f samples/s %.0f eta %s%s%s", p->tty ? "\r" : "",
           p->done, p->total_steps, info->epoch + 1, epochs, p->window_loss / (double)steps, rate,
           eta, extra, p->tty ? "\033[K" : "\n");
    p->pending = p->tty;
    if (last) {
        end_progress_line(p);
    }
    fflush(stdout);
    p->last_print = now;
    p->last_step = p->done;
    p->window_loss = 0.0;
    return 0;
}

/* dir/name.gz when it exists, else dir/name. */
static void data_path(const char *dir, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s.gz", dir, name);
    if (access(out, F_OK) != 0) {
        snprintf(out, n, "%s/%s", dir, name);
    }
}

/* Refuses a --save-params target that cannot be written, before training:
 * a directory, or a file in a directory that is missing or not writable. */
static bl_status_t check_save_path(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "ballast-train: --save-params %s: is a directory\n", path);
        return BL_ERR_INVALID_ARG;
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash == NULL ? 1 : (slash == path ? 1 : (int)(slash - path)),
             slash == NULL ? "." : path);
    if (access(dir, W_OK) != 0) {
        fprintf(stderr, "ballast-train: --save-params %s: cannot write into %s: %s\n", path, dir,
                strerror(errno));
        return BL_ERR_INVALID_ARG;
    }
    return BL_OK;
}

/* The MLP: dense + ReLU per hidden width, then dense to the classes. */
static bl_status_t build_model(bl_runtime_t *rt, const train_options_t *o, int features,
                               int classes, bl_model_t **out)
{
    bl_model_t *m = NULL;
    bl_status_t st = bl_model_create(rt, features, &m);
    for (int i = 0; st == BL_OK && i < o->hidden_count; i++) {
        st = bl_model_add_dense(m, o->hidden[i]);
        if (st == BL_OK) {
            st = bl_model_add_relu(m);
        }
    }
    if (st == BL_OK) {
        st = bl_model_add_dense(m, classes);
    }
    if (st == BL_OK) {
        st = bl_model_build(m, o->seed);
    }
    if (st != BL_OK) {
        bl_model_destroy(m);
        m = NULL;
    }
    *out = m;
    return st;
}

/* Rank 0 prints one line per rank: its place in the grid, its layers and
 * the most micro-batches it held between forward and backward. */
static bl_status_t print_stages(bl_runtime_t *rt, const bl_trainer_t *trainer)
{
    enum { FIELDS = 6 };
    bl_layout_info_t li;
    bl_status_t st = bl_trainer_layout(trainer, &li);
    if (st != BL_OK) {
        return st;
    }
    int mine[FIELDS] = {li.replica,    li.stage,          li.first_layer,
                        li.last_layer, li.stash_capacity, li.peak_stashed};
    int size = bl_runtime_size(rt), rank = bl_runtime_rank(rt);
    int *all = rank == 0 ? malloc((size_t)size * FIELDS * sizeof *all) : NULL;
    if (rank == 0 && all == NULL) {
        return BL_ERR_NO_MEM;
    }
    MPI_Gather(mine, FIELDS, MPI_INT, all, FIELDS, MPI_INT, 0, MPI_COMM_WORLD);
    for (int r = 0; rank == 0 && r < size; r++) {
        const int *f = &all[r * FIELDS];
        printf("stage: rank=%d pipeline=%d stage=%d layers=%d-%d micro_batches=%d "
               "stash_capacity=%d peak_stashed=%d\n",
               r, f[0], f[1], f[2], f[3] - 1, li.micro_batches, f[4], f[5]);
    }
    free(all);
    return BL_OK;
}

/* A library failure on this rank, to stderr. */
static void report_failure(bl_runtime_t *rt, bl_status_t st)
{
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    /* Without a runtime (its creation failed) the library logged why. */
    fprintf(stderr, "ballast-train: rank %d: %s: %s\n(for more detail set BALLAST_LOG=debug)\n",
            rank, bl_status_string(st),
            rt != NULL ? bl_last_error(rt) : "the runtime could not be created (see above)");
    fflush(stderr);
}

/* Trains as the options say. Any failure is printed here (the library's
 * with bl_last_error) and flagged in *reported. */
static bl_status_t train(bl_runtime_t *rt, const train_options_t *o, int *reported, int *stopped)
{
    int rank = bl_runtime_rank(rt);
    char images[4096], labels[4096];
    bl_dataset_t *train_set = NULL, *test_set = NULL;
    bl_model_t *model = NULL;
    bl_trainer_t *trainer = NULL;

    data_path(o->data_dir, "train-images-idx3-ubyte", images, sizeof images);
    data_path(o->data_dir, "train-labels-idx1-ubyte", labels, sizeof labels);
    bl_status_t st = bl_dataset_open_idx(rt, images, labels, o->classes, &train_set);
    if (st == BL_OK) {
        data_path(o->data_dir, "t10k-images-idx3-ubyte", images, sizeof images);
        data_path(o->data_dir, "t10k-labels-idx1-ubyte", labels, sizeof labels);
        st = bl_dataset_open_idx(rt, images, labels, bl_dataset_classes(train_set), &test_set);
    }
    /* Everything that can be refused is refused before training starts. */
    if (st == BL_OK && bl_dataset_features(test_set) != bl_dataset_features(train_set)) {
        st = BL_ERR_MISMATCH;
        *reported = 1;
        if (rank == 0) {
            fprintf(stderr,
                    "ballast-train: %s: %d features per sample, but the training images have %d\n",
                    images, bl_dataset_features(test_set), bl_dataset_features(train_set));
        }
    }
    if (st == BL_OK && o->save_params != NULL) {
        /* Rank 0 creates the file (the stages write into it), so rank 0
         * checks, and all follow. */
        int refused = rank == 0 ? check_save_path(o->save_params) != BL_OK : 0;
        MPI_Bcast(&refused, 1, MPI_INT, 0, MPI_COMM_WORLD);
        st = refused ? BL_ERR_INVALID_ARG : BL_OK;
        *reported = refused;
    }
    if (st == BL_OK) {
        st = build_model(rt, o, bl_dataset_features(train_set), bl_dataset_classes(train_set),
                         &model);
    }
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = o->batch;
    cfg.optimizer.lr = o->lr;
    cfg.optimizer.momentum = o->momentum;
    cfg.optimizer.weight_decay = o->weight_decay;
    cfg.seed = o->seed;
    cfg.shuffle = o->shuffle;
    cfg.transport.node_reduce = o->node_reduce;
    cfg.transport.zero = o->lm.zero; /* --zero, which both models take */
    cfg.transport.nccl = o->nccl;
    cfg.transport.data_on_device = o->data_on_device;
    cfg.plan.shards = o->shard_count > 0 ? o->shards : NULL;
    cfg.plan.shard_count = o->shard_count;
    cfg.transport.bucket_mb = o->bucket_mb;
    cfg.balance.policy = o->policy;
    cfg.balance.rebalance_every = o->rebalance_every;
    cfg.balance.policy_file = o->policy_file;
    cfg.diagnostics.telemetry_path = o->telemetry_path;
    cfg.diagnostics.trace_path = o->trace_path;
    cfg.pipeline.stages = o->pp;
    cfg.pipeline.micro_batches = o->micro_batches;
    cfg.pipeline.schedule = o->schedule;
    cfg.pipeline.stage_local = o->stage_local;
    cfg.plan.stage_first = o->stage_count > 0 ? o->stage_first : NULL;
    cfg.plan.stage_count = o->stage_count;
    cfg.balance.stage_plan_steps = o->stage_plan_count > 0 ? o->stage_plan_steps : NULL;
    cfg.balance.stage_plan_first = o->stage_plan_count > 0 ? o->stage_plan_first : NULL;
    cfg.balance.stage_plan_count = o->stage_plan_count;
    cfg.balance.repartition_horizon = o->repartition_horizon;
    cfg.balance.repartition_threshold = o->repartition_threshold;
    cfg.plan.shard_min = o->shard_min_count > 0 ? o->shard_min : NULL;
    cfg.plan.shard_max = o->shard_max_count > 0 ? o->shard_max : NULL;
    cfg.plan.shard_cap_count = o->shard_min_count > 0 ? o->shard_min_count : o->shard_max_count;
    cfg.diagnostics.timeout_s = o->timeout_s;
    cfg.mem_limit_bytes = o->mem_limit_bytes;
    if (st == BL_OK) {
        st = bl_trainer_create(rt, model, train_set, &cfg, &trainer);
    }
    if (st != BL_OK) {
        goto done;
    }
    long steps = o->steps >= 0 ? o->steps : o->epochs * bl_trainer_steps_per_epoch(trainer);
    bl_log(rt, BL_LOG_INFO,
           "training %zu parameters on %ld samples: %ld steps of %d (%ld per epoch)",
           bl_model_param_count(model), bl_dataset_count(train_set), steps, o->batch,
           bl_trainer_steps_per_epoch(trainer));
    /* The demo's and tests' hooks: emulated slow ranks (--emulate-slowdown),
     * and modelled step times (seconds per operation), so a run under any
     * policy decides the same every time. */
    if (o->slowdown_count > 0) {
        st = bl_trainer_emulate_slowdown(trainer, o->slowdowns, o->slowdown_count);
        if (st != BL_OK) {
            goto done;
        }
    }
    const char *modelled = getenv("BALLAST_TEST_MODELLED_TIME");
    if (modelled != NULL) {
        st = bl_trainer_emulate_timing(trainer, strtod(modelled, NULL));
        if (st != BL_OK) {
            goto done;
        }
    }
    /* Each rank reads the layers it holds (its stage's under stage-local
     * memory); a checkpoint to resume from wins over the file. */
    if (o->init_params != NULL) {
        st = bl_trainer_load_params(trainer, o->init_params);
        if (st != BL_OK) {
            goto done;
        }
    }
    if (o->resume) {
        int resumed = 0;
        st = bl_trainer_resume(trainer, o->checkpoint_dir, &resumed);
        if (st != BL_OK) {
            goto done;
        }
        if (!resumed) {
            bl_log(rt, BL_LOG_INFO, "resume: no checkpoint in %s; starting from step 0",
                   o->checkpoint_dir);
        }
    }
    long first = bl_trainer_step(trainer);
    progress_t p = {.opt = o,
                    .rank = rank,
                    .trainer = trainer,
                    .test_set = test_set,
                    .total_steps = steps,
                    .batch = o->batch,
                    .tty = redraws_in_place(),
                    .rt = rt,
                    .first_step = first,
                    .last_step = first,
                    .done = first};
    run_hooks_init(&p.hooks, rt, o, steps, save_periodic, &p);
    p.start = p.last_print = MPI_Wtime();
    st = bl_trainer_run(trainer, steps > first ? steps - first : 0, on_step, &p);
    end_progress_line(&p);
    if (st == BL_OK) {
        st = p.eval_status != BL_OK ? p.eval_status : p.hooks.ckpt_status;
    }
    if (st == BL_OK && o->checkpoint_dir != NULL) {
        char path[4096];
        st = bl_trainer_save_checkpoint(trainer, o->checkpoint_dir, o->keep, path, sizeof path);
        if (st == BL_OK && p.hooks.stopped) {
            *stopped = 1;
            if (rank == 0) {
                printf("stopped: after step %ld by a signal; checkpoint %s\n", p.done - 1, path);
                fflush(stdout);
            }
            goto done;
        }
    }
    double train_seconds = MPI_Wtime() - p.start;
    double test_loss = 0.0, test_accuracy = 0.0;
    if (st == BL_OK) {
        st = bl_trainer_evaluate(trainer, test_set, &test_loss, &test_accuracy);
    }
    if (st == BL_OK && (o->pp > 1 || o->micro_batches > 1)) {
        st = print_stages(rt, trainer);
    }
    if (st == BL_OK && rank == 0) {
        long ran = p.done - p.first_step; /* steps this process trained */
        long n = ran < LOSS_WINDOW ? ran : LOSS_WINDOW;
        double recent = 0.0; /* slots not yet written hold 0 */
        for (long i = 0; i < LOSS_WINDOW; i++) {
            recent += p.recent[i];
        }
        printf("summary: steps=%ld samples_per_s=%.1f train_loss=%.6f test_accuracy=%.4f "
               "test_loss=%.6f\n",
               p.done,
               train_seconds > 0 ? (double)(p.done - p.first_step) * o->batch / train_seconds : 0.0,
               n > 0 ? recent / (double)n : 0.0, test_accuracy, test_loss);
        fflush(stdout);
    }
    if (st == BL_OK && o->save_params != NULL) {
        /* Collective: each stage writes its own layers into the one file. */
        st = bl_trainer_save_params(trainer, o->save_params);
    }
done:
    /* Said before the teardown, which may wait on ranks that are gone. */
    if (st != BL_OK && !*reported) {
        report_failure(rt, st);
        *reported = 1;
    }
    /* After a timeout, reductions the late ranks may still complete point
     * into the library's buffers: end the job now, before anything is
     * freed (ballast.h, timeout_s). */
    if (st == BL_ERR_TIMEOUT) {
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    bl_trainer_destroy(trainer);
    bl_model_destroy(model);
    bl_dataset_destroy(test_set);
    bl_dataset_destroy(train_set);
    return st;
}

int main(int argc, char **argv)
{
    /* Open MPI's non-blocking all-reduce picks a binomial tree for fewer
     * than 4 ranks (one rank sums everything); the ring is measured 4-13%
     * faster for ballast's gradient buckets at np = 2 (bench/bench_dp.sh,
     * figure h). A value the user set wins; other MPIs ignore the name. */
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", 0);
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);

    train_options_t opt;
    char err[512];
    if (train_options_parse(argc, argv, &opt, err, sizeof err) != 0) {
        if (rank == 0) {
            fprintf(stderr, "ballast-train: %s\n", err);
        }
        MPI_Finalize();
        return 2;
    }
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (!opt.help && train_options_check_ranks(&opt, size, err, sizeof err) != 0) {
        if (rank == 0) {
            fprintf(stderr, "ballast-train: %s\n", err);
        }
        MPI_Finalize();
        return 2;
    }
    if (opt.help) {
        if (rank == 0) {
            fputs(train_options_usage(), stdout);
        }
        MPI_Finalize();
        return 0;
    }
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.blas_threads = opt.threads;
    cfg.device = train_options_device(&opt, rank);
    bl_runtime_t *rt = NULL;
    int reported = 0, stopped = 0;
    bl_status_t st = bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt);
    if (st == BL_OK) {
        st = opt.lm.on ? lm_train(rt, &opt, &reported, &stopped)
                       : train(rt, &opt, &reported, &stopped);
    }
    if (st != BL_OK) {
        if (!reported) {
            report_failure(rt, st);
        }
        bl_runtime_destroy(rt);
        if (size > 1) {
            MPI_Abort(MPI_COMM_WORLD, 1); /* the other ranks may be waiting in a collective */
        }
        MPI_Finalize();
        return 1;
    }
    bl_runtime_destroy(rt);
    MPI_Finalize();
    return stopped ? 3 : 0;
}
