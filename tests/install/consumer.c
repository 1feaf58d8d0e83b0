/* A program outside the ballast tree, built against an installed ballast
 * (tests/install_test.sh builds it with find_package and with pkg-config):
 * trains a small MLP data-parallel on generated data through the public
 * API only and prints "consumer: ok ranks=P loss=L" on rank 0. */
#include <stdio.h>
#include <stdlib.h>

#include <ballast.h>

enum { FEATURES = 8, CLASSES = 2, SAMPLES = 256 };

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    bl_runtime_t *rt = NULL;
    bl_dataset_t *data = NULL;
    bl_model_t *m = NULL;
    bl_trainer_t *t = NULL;
    float *x = malloc(sizeof(float) * SAMPLES * FEATURES);
    int *y = malloc(sizeof(int) * SAMPLES);
    /* Class = whether the first feature is positive. */
    for (int i = 0; i < SAMPLES; i++) {
        for (int f = 0; f < FEATURES; f++) {
            x[i * FEATURES + f] = (float)(((i * 7 + f * 13) % 17) - 8) / 8.0f;
        }
        y[i] = x[i * FEATURES] > 0.0f;
    }
    bl_status_t st = bl_runtime_create(MPI_COMM_WORLD, NULL, &rt);
    if (st == BL_OK) {
        st = bl_dataset_from_memory(rt, SAMPLES, FEATURES, CLASSES, x, y, &data);
    }
    if (st == BL_OK) {
        st = bl_model_create(rt, FEATURES, &m);
    }
    if (st == BL_OK) {
        st = bl_model_add_dense(m, 16);
    }
    if (st == BL_OK) {
        st = bl_model_add_relu(m);
    }
    if (st == BL_OK) {
        st = bl_model_add_dense(m, CLASSES);
    }
    if (st == BL_OK) {
        st = bl_model_build(m, 1);
    }
    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    cfg.batch = 32;
    if (st == BL_OK) {
        st = bl_trainer_create(rt, m, data, &cfg, &t);
    }
    if (st == BL_OK) {
        st = bl_trainer_run(t, 3 * bl_trainer_steps_per_epoch(t), NULL, NULL);
    }
    double loss = 0.0, accuracy = 0.0;
    if (st == BL_OK) {
        st = bl_trainer_evaluate(t, data, &loss, &accuracy);
    }
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (st != BL_OK) {
        fprintf(stderr, "consumer: %s\n", rt != NULL ? bl_last_error(rt) : "no runtime");
    } else if (rank == 0) {
        printf("consumer: ok ranks=%d loss=%.4f accuracy=%.4f\n", bl_runtime_size(rt), loss,
               accuracy);
    }
    bl_trainer_destroy(t);
    bl_model_destroy(m);
    bl_dataset_destroy(data);
    bl_runtime_destroy(rt);
    free(x);
    free(y);
    MPI_Finalize();
    return st == BL_OK ? 0 : 1;
}
