/* A model with a user layer: dense(256) + ReLU, then the user's
 * tanh_dense(64) from tanh_dense_layer.c, then dense to the classes,
 * trained for one epoch on Fashion-MNIST (or the IDX directory given as the
 * first argument) through the public API only.
 *
 *   custom_layer [DATA_DIR]                                                 */
#include <stdio.h>

#include "ballast.h"
#include "tanh_dense_layer.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        bl_status_t st_ = (call);                                                                  \
        if (st_ != BL_OK) {                                                                        \
            fprintf(stderr, "custom_layer: %s failed: %s: %s\n", #call, bl_status_string(st_),     \
                    bl_last_error(rt));                                                            \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                          \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    char images[1024], labels[1024];
    bl_runtime_t *rt = NULL;
    if (bl_runtime_create(MPI_COMM_WORLD, NULL, &rt) != BL_OK) {
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    bl_dataset_t *train = NULL, *test = NULL;
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte.gz", dir);
    CHECK(bl_dataset_open_idx(rt, images, labels, 0, &train));
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte.gz", dir);
    CHECK(bl_dataset_open_idx(rt, images, labels, bl_dataset_classes(train), &test));

    static int tanh_width = 64; /* the user layer's state: its output width */
    bl_model_t *model = NULL;
    CHECK(bl_model_create(rt, bl_dataset_features(train), &model));
    CHECK(bl_model_add_dense(model, 256));
    CHECK(bl_model_add_relu(model));
    CHECK(bl_model_add_layer(model, &tanh_dense_ops, &tanh_width));
    CHECK(bl_model_add_dense(model, bl_dataset_classes(train)));
    CHECK(bl_model_build(model, 7));

    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = 128;
    cfg.optimizer.lr = 0.05f;
    bl_trainer_t *trainer = NULL;
    CHECK(bl_trainer_create(rt, model, train, &cfg, &trainer));
    CHECK(bl_trainer_run(trainer, bl_trainer_steps_per_epoch(trainer), NULL, NULL));

    double loss = 0.0, accuracy = 0.0;
    CHECK(bl_trainer_evaluate(trainer, test, &loss, &accuracy));
    printf("custom_layer: one epoch with a tanh_dense user layer: test loss %.4f accuracy %.4f\n",
           loss, accuracy);

    bl_trainer_destroy(trainer);
    bl_model_destroy(model);
    bl_dataset_destroy(test);
    bl_dataset_destroy(train);
    bl_runtime_destroy(rt);
    MPI_Finalize();
    return 0;
}
