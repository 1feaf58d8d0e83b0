/* BL_HOST_DEVICE marks a function that both the CPU kernels (C) and the
 * CUDA kernels (nvcc) compile from one header, so that the two compute the
 * same thing the same way (xent_row.h, gelu_approx.h, adamw_step.h). */
#ifndef BL_HOST_DEVICE_H
#define BL_HOST_DEVICE_H

#ifdef __CUDACC__
#define BL_HOST_DEVICE __host__ __device__
#else
#define BL_HOST_DEVICE
#endif

#endif /* BL_HOST_DEVICE_H */
