/* Data × pipeline parallelism through the public API: the job's ranks form
 * pipelines of two stages (rank r is stage r % 2 of pipeline r / 2); each
 * step's global batch is split between the pipelines, and each pipeline
 * runs its slice as four micro-batches on the 1F1B schedule. The trained
 * parameters are the same as one process would get. Every rank prints its
 * place in the grid; rank 0 prints the test accuracy.
 *
 *   mpirun -np 4 hybrid_mlp [DATA_DIR]        (any even number of ranks)   */
#include <stdio.h>

#include "ballast.h"

/* 784 → 256 → ReLU → 128 → ReLU → 10: five layers for two stages. */
static bl_status_t build_mlp(bl_runtime_t *rt, int features, int classes, bl_model_t **out)
{
    bl_status_t st = bl_model_create(rt, features, out);
    const int widths[] = {256, 128};
    for (int i = 0; st == BL_OK && i < 2; i++) {
        st = bl_model_add_dense(*out, widths[i]);
        if (st == BL_OK) {
            st = bl_model_add_relu(*out);
        }
    }
    if (st == BL_OK) {
        st = bl_model_add_dense(*out, classes);
    }
    return st == BL_OK ? bl_model_build(*out, 1) : st;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    char images[1024], labels[1024], test_images[1024], test_labels[1024];
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte.gz", dir);
    snprintf(test_images, sizeof test_images, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(test_labels, sizeof test_labels, "%s/t10k-labels-idx1-ubyte.gz", dir);

    bl_runtime_t *rt = NULL;
    bl_dataset_t *train = NULL, *test = NULL;
    bl_model_t *model = NULL;
    bl_trainer_t *trainer = NULL;
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.pipeline.stages = 2;                  /* the rest of the ranks are data-parallel */
    cfg.pipeline.micro_batches = 4;           /* per pipeline per step */
    cfg.pipeline.schedule = BL_SCHEDULE_1F1B; /* stage s stashes at most 2 − s micro-batches */
    double loss = 0.0, accuracy = 0.0;

    bl_status_t st = bl_runtime_create(MPI_COMM_WORLD, NULL, &rt);
    if (st == BL_OK) {
        st = bl_dataset_open_idx(rt, images, labels, 0, &train);
    }
    if (st == BL_OK) {
        st = bl_dataset_open_idx(rt, test_images, test_labels, bl_dataset_classes(train), &test);
    }
    if (st == BL_OK) {
        st = build_mlp(rt, bl_dataset_features(train), bl_dataset_classes(train), &model);
    }
    if (st == BL_OK) {
        st = bl_trainer_create(rt, model, train, &cfg, &trainer);
    }
    if (st == BL_OK) {
        st = bl_trainer_run(trainer, bl_trainer_steps_per_epoch(trainer), NULL, NULL);
    }
    bl_layout_info_t where;
    if (st == BL_OK) {
        st = bl_trainer_layout(trainer, &where);
    }
    if (st == BL_OK) {
        printf("rank %d: pipeline %d of %d, stage %d of %d, layers %d-%d, at most %d "
               "micro-batches stashed\n",
               bl_runtime_rank(rt), where.replica, where.data_parallel, where.stage, where.stages,
               where.first_layer, where.last_layer - 1, where.peak_stashed);
        fflush(stdout);
        /* After a run every rank holds the whole model: evaluation is split
         * across all ranks. */
        st = bl_trainer_evaluate(trainer, test, &loss, &accuracy);
    }
    if (st == BL_OK && bl_runtime_rank(rt) == 0) {
        printf("test accuracy %.4f (loss %.4f)\n", accuracy, loss);
    } else if (st != BL_OK) {
        fprintf(stderr, "hybrid_mlp: %s: %s\n", bl_status_string(st), rt ? bl_last_error(rt) : "");
    }
    bl_trainer_destroy(trainer);
    bl_model_destroy(model);
    bl_dataset_destroy(test);
    bl_dataset_destroy(train);
    bl_runtime_destroy(rt);
    MPI_Finalize();
    return st == BL_OK ? 0 : 1;
}
