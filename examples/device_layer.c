/* A user layer that runs on any device: y = relu(x · W^T), shapes x
 * (batch, in), W (out, in), y (batch, out), written with the bl_math_*
 * helpers only, so its forward and backward serve as its device passes
 * too (bl_model_set_device_ops). The model dense(128) + ReLU, the user's
 * layer (64), dense to the classes trains for one epoch on the device the
 * second argument names.
 *
 *   device_layer [DATA_DIR] [cpu|cuda|auto|mirror]
 *   mpirun -np 3 device_layer DATA_DIR cuda      (every rank on a GPU)  */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ballast.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        bl_status_t st_ = (call);                                                                  \
        if (st_ != BL_OK) {                                                                        \
            fprintf(stderr, "device_layer: %s failed: %s: %s\n", #call, bl_status_string(st_),     \
                    bl_last_error(rt));                                                            \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                          \
        }                                                                                          \
    } while (0)

static bl_status_t relu_linear_shape(void *state, int in, int *out, size_t *params)
{
    *out = *(const int *)state;
    *params = (size_t)*out * (size_t)in;
    return BL_OK;
}

/* Runs on the host, before training: the parameters start in host memory. */
static bl_status_t relu_linear_init(void *state, int in, int out, float *params, uint64_t seed)
{
    float bound = 1.0f / sqrtf((float)in);
    bl_fill_uniform(params, (size_t)in * (size_t)out, -bound, bound, seed);
    return BL_OK;
}

static bl_status_t relu_linear_forward(const bl_layer_call_t *c)
{
    /* (batch, out) = (batch, in) · W^T, then max(·, 0) in place. */
    bl_status_t st =
        bl_math_gemm(c->device, 0, 1, c->batch, c->out_features, c->in_features, 1.0f, c->x,
                     c->in_features, c->params, c->in_features, 0.0f, c->y, c->out_features);
    if (st != BL_OK) {
        return st;
    }
    return bl_math_relu(c->device, (size_t)c->batch * (size_t)c->out_features, c->y, c->y);
}

static bl_status_t relu_linear_backward(const bl_layer_call_t *c)
{
    /* dz = dy where y > 0 (in place: dy is scratch after the call). */
    bl_status_t st = bl_math_relu_backward(c->device, (size_t)c->batch * (size_t)c->out_features,
                                           c->y, c->dy, c->dy);
    /* dW (out, in) (+)= dz^T (out, batch) · x (batch, in); an empty batch
     * gives beta · dW, so dW is cleared or kept as accumulate says. */
    if (st == BL_OK) {
        st = bl_math_gemm(c->device, 1, 0, c->out_features, c->in_features, c->batch, 1.0f, c->dy,
                          c->out_features, c->x, c->in_features, c->accumulate ? 1.0f : 0.0f,
                          c->grads, c->in_features);
    }
    /* dx (batch, in) = dz (batch, out) · W (out, in) */
    if (st == BL_OK && c->dx != NULL) {
        st = bl_math_gemm(c->device, 0, 0, c->batch, c->in_features, c->out_features, 1.0f, c->dy,
                          c->out_features, c->params, c->in_features, 0.0f, c->dx, c->in_features);
    }
    return st;
}

static double relu_linear_cost(void *state, int in, int out)
{
    return (double)in * (double)out;
}

static const bl_layer_ops_t relu_linear_ops = {
    .name = "relu_linear",
    .shape = relu_linear_shape,
    .init = relu_linear_init,
    .forward = relu_linear_forward,
    .backward = relu_linear_backward,
    .cost_hint = relu_linear_cost,
};

static int device_named(const char *name)
{
    static const char *const names[] = {"cpu", "cuda", "auto", "mirror"};
    static const int kinds[] = {BL_DEVICE_CPU, BL_DEVICE_CUDA, BL_DEVICE_AUTO, BL_DEVICE_MIRROR};
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            return kinds[i];
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    bl_config_t rcfg = BL_CONFIG_INIT;
    rcfg.device = device_named(argc > 2 ? argv[2] : "auto");
    if (rcfg.device < 0) {
        fprintf(stderr, "device_layer: device '%s' is not cpu, cuda, auto or mirror\n", argv[2]);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    bl_runtime_t *rt = NULL;
    if (bl_runtime_create(MPI_COMM_WORLD, &rcfg, &rt) != BL_OK) {
        MPI_Abort(MPI_COMM_WORLD, 1); /* the library logged why */
    }
    char device[96];
    bl_runtime_device(rt, device, sizeof device);

    char images[1024], labels[1024];
    bl_dataset_t *train = NULL, *test = NULL;
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte.gz", dir);
    CHECK(bl_dataset_open_idx(rt, images, labels, 0, &train));
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte.gz", dir);
    CHECK(bl_dataset_open_idx(rt, images, labels, bl_dataset_classes(train), &test));

    static int width = 64; /* the user layer's state: its output width */
    bl_model_t *model = NULL;
    CHECK(bl_model_create(rt, bl_dataset_features(train), &model));
    CHECK(bl_model_add_dense(model, 128));
    CHECK(bl_model_add_relu(model));
    CHECK(bl_model_add_layer(model, &relu_linear_ops, &width));
    /* Only bl_math_* inside: the host passes run on a GPU's memory too. */
    CHECK(bl_model_set_device_ops(model, 2, relu_linear_forward, relu_linear_backward));
    CHECK(bl_model_add_dense(model, bl_dataset_classes(train)));
    CHECK(bl_model_build(model, 7));

    bl_train_config_t cfg = BL_TRAIN_CONFIG_INIT;
    bl_trainer_t *trainer = NULL;
    CHECK(bl_trainer_create(rt, model, train, &cfg, &trainer));
    CHECK(bl_trainer_run(trainer, bl_trainer_steps_per_epoch(trainer), NULL, NULL));
    double loss = 0.0, accuracy = 0.0;
    CHECK(bl_trainer_evaluate(trainer, test, &loss, &accuracy));
    if (bl_runtime_rank(rt) == 0) {
        printf("device_layer: one epoch on %s with a relu_linear user layer: test loss %.4f "
               "accuracy %.4f\n",
               device, loss, accuracy);
    }
    bl_trainer_destroy(trainer);
    bl_model_destroy(model);
    bl_dataset_destroy(test);
    bl_dataset_destroy(train);
    bl_runtime_destroy(rt);
    MPI_Finalize();
    return 0;
}
