/* The contract of kernels.h's bl_device_memory_t for overlapped downloads,
 * the two waits (finish, finish_compute) and pinned host memory, checked
 * on any device's memory table: the mirror's (test_device.c) and a GPU's
 * (test_cuda_kernels.c). Include after cmocka.h; one function, static,
 * for the including test. */
#ifndef BL_TEST_MEMORY_CONTRACT_H
#define BL_TEST_MEMORY_CONTRACT_H

#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* Downloads in a row: more than a device keeps track of at once (64 on
 * the GPU and the mirror), so its records wrap around. */
enum { CONTRACT_DOWNLOADS = 3 * 64 + 5, CONTRACT_SLICE = 257 };

static void check_memory_contract(const bl_device_memory_t *mem)
{
    size_t count = (size_t)CONTRACT_DOWNLOADS * CONTRACT_SLICE;
    size_t nbytes = count * sizeof(float);
    float *src = malloc(nbytes), *dst = malloc(nbytes);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < count; i++) {
        src[i] = (float)(i % 1009) - 500.0f;
        dst[i] = -1.0f;
    }
    /* Pinning may be refused (a locked-memory limit): then the buffers
     * work as pageable ones, and everything below holds as well. */
    int src_pinned = mem->pin(src, nbytes) == 0;
    int dst_pinned = mem->pin(dst, nbytes) == 0;
    float *dev = mem->alloc(nbytes);
    assert_non_null(dev);
    assert_int_equal(mem->to_device(dev, src, nbytes), 0);

    /* One download: numbered, arrives (polled without waiting), and the
     * host buffer then holds the device's bytes. */
    long first = mem->to_host_start(dst, dev, CONTRACT_SLICE * sizeof(float));
    assert_true(first >= 1);
    int polls = 0, arrived = 0;
    while ((arrived = mem->arrived(first, 0)) == 0) {
        assert_true(++polls < 100000000);
    }
    assert_int_equal(arrived, 1);
    assert_memory_equal(dst, src, CONTRACT_SLICE * sizeof(float));
    assert_int_equal(mem->arrived(first, 0), 1); /* and stays arrived */

    /* Many in a row, numbered one after another; waiting for the last
     * means all have arrived, each in its own slice. */
    long last = first;
    for (int k = 0; k < CONTRACT_DOWNLOADS; k++) {
        size_t at = (size_t)k * CONTRACT_SLICE;
        long n = mem->to_host_start(dst + at, dev + at, CONTRACT_SLICE * sizeof(float));
        assert_int_equal(n, last + 1);
        last = n;
    }
    assert_int_equal(mem->arrived(last, 1), 1);
    assert_memory_equal(dst, src, nbytes);
    assert_int_equal(mem->arrived(first + 1, 0), 1);

    /* A download after kernels and copies queued before it sees them. */
    assert_int_equal(mem->zero(dev, CONTRACT_SLICE * sizeof(float)), 0);
    long zeroed = mem->to_host_start(dst, dev, CONTRACT_SLICE * sizeof(float));
    assert_int_equal(mem->arrived(zeroed, 1), 1);
    for (int i = 0; i < CONTRACT_SLICE; i++) {
        assert_true(dst[i] == 0.0f);
    }

    /* finish also waits for downloads in flight. */
    long pending = mem->to_host_start(dst, dev + CONTRACT_SLICE, CONTRACT_SLICE * sizeof(float));
    char err[256] = "";
    assert_int_equal(mem->finish(err, sizeof err), 0);
    assert_memory_equal(dst, src + CONTRACT_SLICE, CONTRACT_SLICE * sizeof(float));
    assert_int_equal(mem->arrived(pending, 0), 1);

    /* A number never started is a failure, reported by the next finish
     * (then cleared); so is 0. */
    assert_int_equal(mem->arrived(pending + 1, 0), -1);
    assert_int_equal(mem->finish(err, sizeof err), -1);
    assert_non_null(strstr(err, "download"));
    assert_int_equal(mem->arrived(0, 1), -1);
    assert_int_equal(mem->finish(err, sizeof err), -1);
    assert_int_equal(mem->finish(err, sizeof err), 0);

    /* finish_compute waits for the kernels and copies alone: an upload
     * queued before it has run (its pinned source may change after), a
     * download started before it may or may not have arrived (the mirror
     * holds it back: test_device.c), and arrives with the bytes it was
     * queued after. */
    size_t slice_nbytes = CONTRACT_SLICE * sizeof(float);
    memcpy(dst, src + 2 * CONTRACT_SLICE, slice_nbytes);
    assert_int_equal(mem->to_device(dev, dst, slice_nbytes), 0);
    long overlapped = mem->to_host_start(dst + CONTRACT_SLICE, dev, slice_nbytes);
    assert_int_equal(mem->finish_compute(err, sizeof err), 0);
    memset(dst, 0, slice_nbytes);
    int early = mem->arrived(overlapped, 0);
    assert_true(early == 0 || early == 1);
    assert_int_equal(mem->arrived(overlapped, 1), 1);
    assert_memory_equal(dst + CONTRACT_SLICE, src + 2 * CONTRACT_SLICE, slice_nbytes);

    /* It reports a recorded failure as finish does (then cleared). */
    assert_int_equal(mem->arrived(overlapped + 1, 0), -1);
    assert_int_equal(mem->finish_compute(err, sizeof err), -1);
    assert_non_null(strstr(err, "download"));
    assert_int_equal(mem->finish_compute(err, sizeof err), 0);
    assert_int_equal(mem->finish(err, sizeof err), 0);

    mem->release(dev);
    if (src_pinned) {
        mem->unpin(src);
    }
    if (dst_pinned) {
        mem->unpin(dst);
    }
    mem->unpin(NULL);
    free(src);
    free(dst);
}

#endif /* BL_TEST_MEMORY_CONTRACT_H */
