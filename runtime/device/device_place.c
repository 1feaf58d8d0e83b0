/* A GPU rank's choice of GPU, and the search for the cores near it
 * (device_place.h). */
#include <stdio.h>

#include "ballast.h"
#include "device_place.h"

int bl_gpu_choose(int requested, int place, int count)
{
    if (count <= 0 || place < 0) {
        return -1;
    }
    if (requested == BL_DEVICE_CUDA) {
        return place % count;
    }
    if (requested == BL_DEVICE_AUTO) {
        return place < count ? place : -1;
    }
    return -1;
}

/* Returns the OS index of the one NUMA node that holds obj's cpus, or -1
 * when there is none. */
static int numa_of(hwloc_topology_t topo, hwloc_obj_t obj)
{
    hwloc_obj_t node =
        hwloc_get_next_obj_covering_cpuset_by_type(topo, obj->cpuset, HWLOC_OBJ_NUMANODE, NULL);
    if (node != NULL) {
        return (int)node->os_index;
    }
    if (obj->nodeset != NULL && hwloc_bitmap_weight(obj->nodeset) == 1) {
        return hwloc_bitmap_first(obj->nodeset);
    }
    return -1;
}

int bl_gpu_locality(hwloc_topology_t topo, const char *bus_id, hwloc_const_cpuset_t current,
                    hwloc_bitmap_t bind_to, char *out, size_t n)
{
    hwloc_obj_t pci = hwloc_get_pcidev_by_busidstring(topo, bus_id);
    hwloc_obj_t near = pci != NULL ? hwloc_get_non_io_ancestor_obj(topo, pci) : NULL;
    if (near == NULL || near->cpuset == NULL) {
        snprintf(out, n, "locality unknown (hwloc does not see PCI device %s)", bus_id);
        return -1;
    }
    char cpus[64];
    hwloc_bitmap_list_snprintf(cpus, sizeof cpus, near->cpuset);
    int numa = numa_of(topo, near);
    char where[96];
    if (numa >= 0) {
        snprintf(where, sizeof where, "NUMA node %d, cpus %s", numa, cpus);
    } else {
        snprintf(where, sizeof where, "cpus %s", cpus);
    }
    hwloc_const_cpuset_t all = hwloc_topology_get_topology_cpuset(topo);
    int unbound = current == NULL || hwloc_bitmap_isincluded(all, current);
    if (unbound && bind_to != NULL) {
        hwloc_bitmap_copy(bind_to, near->cpuset);
        snprintf(out, n, "%s; bound there", where);
        return 1;
    }
    snprintf(out, n, "%s; %s", where,
             hwloc_bitmap_isincluded(current, near->cpuset)
                 ? "bound by the launcher within them"
                 : "bound by the launcher elsewhere (farther from the GPU)");
    return 0;
}
