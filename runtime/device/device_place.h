/* Where a GPU rank goes: which of the node's GPUs a rank takes, and which
 * cores are near a GPU in an hwloc topology (one loaded with its PCI
 * devices, or an XML one in tests). Both are pure functions of their
 * inputs, so that the choice and the locality are tested without a GPU.
 * This header is not installed. */
#ifndef BL_DEVICE_PLACE_H
#define BL_DEVICE_PLACE_H

#include <stddef.h>

#include <hwloc.h>

/* Returns the index of the GPU that a rank takes, or -1 for the CPU.
 * `place` is the rank's index among the node's ranks that want a GPU (in
 * rank order), and `count` is the number of GPUs it sees. For
 * BL_DEVICE_CUDA the GPU is place % count (several ranks share a GPU when
 * there are more ranks than GPUs); for BL_DEVICE_AUTO it is place while
 * place < count, else -1. The result is -1 for count <= 0, for a negative
 * place and for any other request. */
int bl_gpu_choose(int requested, int place, int count);

/* Finds the cores near the PCI device `bus_id` (e.g. "0000:19:00.0") in
 * topo, which must be loaded with its PCI devices, and writes a sentence
 * about them into out (n bytes), such as "NUMA node 1, cpus 2-3; bound
 * there". `current` is the process's binding. When it is NULL or covers the
 * whole machine (the launcher left the rank unbound), and bind_to is not
 * NULL, the GPU's cpuset is copied into bind_to and 1 is returned: the
 * caller should bind there, as out already says. Returns 0 when the caller
 * should leave the binding as it is, and -1 when the device is not in the
 * topology (out says so). */
int bl_gpu_locality(hwloc_topology_t topo, const char *bus_id, hwloc_const_cpuset_t current,
                    hwloc_bitmap_t bind_to, char *out, size_t n);

#endif /* BL_DEVICE_PLACE_H */
