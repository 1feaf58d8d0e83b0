/* Where a GPU rank goes, as pure functions of their inputs, so that the
 * choice and the locality are tested without a GPU: which of the node's
 * GPUs a rank takes, and the cores near a GPU in an hwloc topology (one
 * loaded with its PCI devices, or an XML one in tests). Not installed. */
#ifndef BL_DEVICE_PLACE_H
#define BL_DEVICE_PLACE_H

#include <stddef.h>

#include <hwloc.h>

/* The GPU a rank takes: `place` is its index among the node's ranks that
 * want a GPU (rank order), `count` the GPUs it sees. BL_DEVICE_CUDA:
 * place % count (several ranks share a GPU when there are more ranks);
 * BL_DEVICE_AUTO: place while place < count, else -1 (the CPU); -1 for
 * count <= 0 or any other request. */
int bl_gpu_choose(int requested, int place, int count);

/* The cores near PCI device `bus_id` ("0000:19:00.0") in topo, loaded
 * with PCI devices. Writes a sentence into out (n bytes): "NUMA node 1,
 * cpus 2-3; bound there" and the like. `current` is the process's
 * binding; when it covers the whole machine (the launcher left the rank
 * unbound) the GPU's cpuset is copied into bind_to and 1 is returned: the
 * caller should bind there (and says so in out). 0: leave the binding;
 * -1: the device is not in the topology (out says so). */
int bl_gpu_locality(hwloc_topology_t topo, const char *bus_id, hwloc_const_cpuset_t current,
                    hwloc_bitmap_t bind_to, char *out, size_t n);

#endif /* BL_DEVICE_PLACE_H */
