/* A user layer written against the public API only: y = tanh(x · W^T),
 * W (out × in), no bias. Used by examples/custom_layer.c and by the
 * gradient-check tests. */
#ifndef TANH_DENSE_LAYER_H
#define TANH_DENSE_LAYER_H

#include "ballast.h"

/* The layer's callback table. user_state: a pointer to an int holding the
 * output width (it must outlive the model; the table has no destroy). */
extern const bl_layer_ops_t tanh_dense_ops;

#endif
