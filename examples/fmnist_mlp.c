/* The smallest complete ballast program: a 784-256-128-10 ReLU MLP trained
 * on Fashion-MNIST for two epochs, printing the loss as it goes and the test
 * accuracy at the end. Public API only; copy it as a starting point.
 *
 *   fmnist_mlp [DATA_DIR]                                                   */
#include <stdio.h>

#include "ballast.h"

static int print_every_epoch(const bl_step_info_t *info, void *arg)
{
    double *loss_sum = arg;
    *loss_sum += info->loss;
    if ((info->step + 1) % info->steps_per_epoch == 0) {
        printf("epoch %ld: mean train loss %.4f\n", info->epoch + 1,
               *loss_sum / (double)info->steps_per_epoch);
        *loss_sum = 0.0;
    }
    return 0;
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
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT; /* batch 128, lr 0.05, momentum 0.9 */
    double loss_sum = 0.0, loss = 0.0, accuracy = 0.0;

    bl_status_t st = bl_runtime_create(MPI_COMM_WORLD, NULL, &rt);
    if (st == BL_OK) {
        st = bl_dataset_open_idx(rt, images, labels, 0, &train);
    }
    if (st == BL_OK) {
        st = bl_dataset_open_idx(rt, test_images, test_labels, bl_dataset_classes(train), &test);
    }
    if (st == BL_OK) {
        st = bl_model_create(rt, bl_dataset_features(train), &model);
    }
    /* 784 → 256 → ReLU → 128 → ReLU → 10 */
    if (st == BL_OK) {
        st = bl_model_add_dense(model, 256);
    }
    if (st == BL_OK) {
        st = bl_model_add_relu(model);
    }
    if (st == BL_OK) {
        st = bl_model_add_dense(model, 128);
    }
    if (st == BL_OK) {
        st = bl_model_add_relu(model);
    }
    if (st == BL_OK) {
        st = bl_model_add_dense(model, bl_dataset_classes(train));
    }
    if (st == BL_OK) {
        st = bl_model_build(model, 1);
    }
    if (st == BL_OK) {
        st = bl_trainer_create(rt, model, train, &cfg, &trainer);
    }
    if (st == BL_OK) {
        st = bl_trainer_run(trainer, 2 * bl_trainer_steps_per_epoch(trainer), print_every_epoch,
                            &loss_sum);
    }
    if (st == BL_OK) {
        st = bl_trainer_evaluate(trainer, test, &loss, &accuracy);
    }
    if (st == BL_OK) {
        printf("test accuracy %.4f (loss %.4f)\n", accuracy, loss);
    } else {
        fprintf(stderr, "fmnist_mlp: %s: %s\n", bl_status_string(st), rt ? bl_last_error(rt) : "");
    }
    bl_trainer_destroy(trainer);
    bl_model_destroy(model);
    bl_dataset_destroy(test);
    bl_dataset_destroy(train);
    bl_runtime_destroy(rt);
    MPI_Finalize();
    return st == BL_OK ? 0 : 1;
}
