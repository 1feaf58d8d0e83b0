/* The rank's device, which is the CPU, a GPU (through the CUDA backend) or
 * the mirror test device. A GPU rank takes a GPU by its place among the GPU
 * ranks of its node and learns the GPU's NUMA node from hwloc (by PCI
 * address). When the launcher left the rank unbound, it binds itself to the
 * cores near the GPU, before the topology module counts its cores for the
 * BLAS threads. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <hwloc.h>

#include "consistency.h"
#include "cuda_backend.h"
#include "device_place.h"
#include "runtime_impl.h"
#include "wait.h"
#include "device.h"

const bl_device_t bl_host_device = {
    .kernels = &bl_cpu_kernels, .memory = NULL, .kind = BL_DEVICE_CPU, .name = "cpu"};

/* The length of a report line. Rank 0 logs one line per GPU rank, which
 * says what the rank chose and where it sits. */
enum { LINE_BYTES = 256 };

bl_device_kind_t bl_runtime_device(const bl_runtime_t *rt, char *name, size_t n)
{
    const bl_device_t *d = rt != NULL ? &rt->device : &bl_host_device;
    if (name != NULL && n > 0) {
        snprintf(name, n, "%s", d->name);
    }
    return d->kind;
}

/* Writes a sentence about the cores near the GPU at PCI address bus_id
 * into out, and binds a rank that the launcher left unbound to those cores.
 * It never fails: when the topology lacks the device (containers often hide
 * PCI), the sentence says so, and so it does when the binding fails. */
static void gpu_locality(const char *bus_id, char *out, size_t n)
{
    hwloc_topology_t topo = NULL;
    hwloc_bitmap_t current = hwloc_bitmap_alloc();
    hwloc_bitmap_t bind_to = hwloc_bitmap_alloc();
    snprintf(out, n, "locality unknown");
    if (current == NULL || bind_to == NULL || hwloc_topology_init(&topo) != 0) {
        goto done;
    }
    /* hwloc filters PCI devices out of topologies by default, so the
     * important ones are kept here. */
    hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load(topo) != 0) {
        goto done;
    }
    int known = hwloc_get_cpubind(topo, current, HWLOC_CPUBIND_PROCESS) == 0;
    int bind = bl_gpu_locality(topo, bus_id, known ? current : NULL, bind_to, out, n);
    if (bind == 1 && hwloc_set_cpubind(topo, bind_to, HWLOC_CPUBIND_PROCESS) != 0) {
        size_t used = strlen(out);
        snprintf(out + used, n - used, " (failed: left unbound)");
    }
done:
    if (topo != NULL) {
        hwloc_topology_destroy(topo);
    }
    hwloc_bitmap_free(current);
    hwloc_bitmap_free(bind_to);
}

/* Opens GPU `index` of `count` for this rank with the backend cuda, and
 * writes the rank's report line into line. Returns 0, or -1 with the reason
 * in err. */
static int open_gpu(bl_runtime_t *rt, const bl_cuda_backend_t *cuda, int index, int count,
                    char *line, char *err, size_t errlen)
{
    bl_cuda_info_t info;
    if (cuda->active()) {
        /* The backend's context (streams, cuBLAS) belongs to the process,
         * so only one runtime per process can compute on a GPU. */
        snprintf(err, errlen,
                 "another runtime of this process computes on a GPU already; one GPU runtime "
                 "per process");
        return -1;
    }
    if (cuda->describe(index, &info, err, errlen) != 0) {
        return -1;
    }
    /* The rank is placed near the GPU before the GPU's context exists, so
     * that the runtime's host memory is allocated there. */
    char where[160];
    gpu_locality(info.pci_bus_id, where, sizeof where);
    if (cuda->init(index, err, errlen) != 0) {
        return -1;
    }
    bl_device_t *d = &rt->device;
    d->kernels = cuda->kernels;
    d->kernels_bf16 = cuda->kernels_bf16;
    d->memory = cuda->memory;
    d->cuda = cuda;
    d->kind = BL_DEVICE_CUDA;
    snprintf(d->name, sizeof d->name, "cuda:%d %.72s", index, info.name);
    snprintf(d->pci_bus_id, sizeof d->pci_bus_id, "%s", info.pci_bus_id);
    snprintf(line, LINE_BYTES, "rank %d: GPU %d of %d, %.60s (%.16s, %.0f GiB, sm_%d%d), %.100s",
             rt->rank, index, count, info.name, info.pci_bus_id,
             (double)info.memory_bytes / 1073741824.0, info.major, info.minor, where);
    return 0;
}

/* Returns a number (never 0) that stands for the GPUs this process sees; it
 * is equal for the processes that see the same GPUs in the same order. A
 * rank's place is counted among the node's ranks that see the same GPUs,
 * because CUDA_VISIBLE_DEVICES may differ per rank, as Slurm's
 * --gpus-per-task sets it. */
static int visible_set(const bl_cuda_backend_t *cuda, int count)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; cuda != NULL && i < count; i++) {
        bl_cuda_info_t info;
        char err[64];
        if (cuda->describe(i, &info, err, sizeof err) == 0) {
            h = bl_seed_mix(h, bl_digest(info.pci_bus_id, strlen(info.pci_bus_id)));
        }
    }
    h = bl_seed_mix(h, (uint64_t)count);
    return (int)(h & 0x3fffffff) | 1;
}

/* Opens the backend into *cuda and returns the number of GPUs that this
 * process sees through it. Returns 0, with the reason in why, when there is
 * none or when the backend is not there; *broken then says whether the
 * backend was found but cannot be used. */
static int visible_gpus(const bl_cuda_backend_t **cuda, int *broken, char *why, size_t n)
{
    *cuda = bl_cuda_backend(why, n, broken);
    return *cuda != NULL ? (*cuda)->device_count(why, n) : 0;
}

/* Makes *peers, the communicator of the ranks of this rank's node that want
 * a GPU from the same set (`color`; it is 0 for the ranks that want none,
 * which form a communicator of their own). This rank's place in *peers
 * picks its GPU, and the caller frees *peers. Collective over rt->comm.
 * Returns BL_OK, or BL_ERR_MPI with *peers MPI_COMM_NULL. */
static bl_status_t gpu_peers(bl_runtime_t *rt, int color, MPI_Comm *peers)
{
    MPI_Comm node = MPI_COMM_NULL;
    *peers = MPI_COMM_NULL;
    int rc = MPI_Comm_split_type(rt->comm, MPI_COMM_TYPE_SHARED, rt->rank, MPI_INFO_NULL, &node);
    if (rc != MPI_SUCCESS) {
        return bl_fail_mpi(rt, rc, "MPI_Comm_split_type by node (GPU choice)");
    }
    rc = MPI_Comm_split(node, color, rt->rank, peers);
    MPI_Comm_free(&node);
    if (rc != MPI_SUCCESS) {
        *peers = MPI_COMM_NULL;
        return bl_fail_mpi(rt, rc, "MPI_Comm_split of a node's GPU ranks");
    }
    return BL_OK;
}

/* Counts into *sharing how many of the node's GPU ranks (this one included)
 * opened this rank's GPU. GPUs are compared by PCI address, because with
 * CUDA_VISIBLE_DEVICES set per rank, as Slurm's --gpus-per-task does, every
 * rank's GPU 0 is another GPU. Collective over peers; a rank without a GPU
 * takes part with an empty address. */
static bl_status_t count_sharing(bl_runtime_t *rt, MPI_Comm peers, int *sharing)
{
    enum { ID = sizeof rt->device.pci_bus_id };
    int n = 1;
    MPI_Comm_size(peers, &n);
    char *all = bl_mem_array(bl_rt_allocator(rt), (size_t)n, ID);
    if (all == NULL) {
        return bl_fail(rt, BL_ERR_NO_MEM, "no memory for %d GPU addresses", n);
    }
    int rc = MPI_Allgather(rt->device.pci_bus_id, ID, MPI_CHAR, all, ID, MPI_CHAR, peers);
    *sharing = 0;
    for (int r = 0; rc == MPI_SUCCESS && rt->device.pci_bus_id[0] != '\0' && r < n; r++) {
        *sharing += strncmp(all + (size_t)r * ID, rt->device.pci_bus_id, ID) == 0;
    }
    bl_mem_free(bl_rt_allocator(rt), all);
    return rc == MPI_SUCCESS ? BL_OK : bl_fail_mpi(rt, rc, "MPI_Allgather of the GPUs' addresses");
}

/* Gathers every rank's report line to rank 0, which logs the lines that are
 * not empty: a GPU rank's line, or the line of a CPU rank whose backend was
 * found but cannot be used. Collective over rt->comm. */
static bl_status_t log_gpu_lines(bl_runtime_t *rt, const char *line)
{
    char *all = NULL;
    if (rt->rank == 0) {
        all = bl_mem_array(bl_rt_allocator(rt), (size_t)rt->size, LINE_BYTES);
    }
    int ok = rt->rank != 0 || all != NULL;
    /* Rank 0 first says whether it has room for the lines; without room,
     * nobody sends and the report is skipped. */
    int rc = MPI_Bcast(&ok, 1, MPI_INT, 0, rt->comm);
    if (rc != MPI_SUCCESS) {
        bl_mem_free(bl_rt_allocator(rt), all);
        return bl_fail_mpi(rt, rc, "MPI_Bcast before the GPU report");
    }
    if (!ok) {
        return BL_OK; /* without a report, no harm is done */
    }
    rc = MPI_Gather(line, LINE_BYTES, MPI_CHAR, all, LINE_BYTES, MPI_CHAR, 0, rt->comm);
    if (rc != MPI_SUCCESS) {
        bl_mem_free(bl_rt_allocator(rt), all);
        return bl_fail_mpi(rt, rc, "MPI_Gather of the GPU report");
    }
    for (int r = 0; rt->rank == 0 && r < rt->size; r++) {
        const char *l = all + (size_t)r * LINE_BYTES;
        if (l[0] != '\0') {
            bl_log(rt, BL_LOG_INFO, "device: %.*s", LINE_BYTES, l);
        }
    }
    bl_mem_free(bl_rt_allocator(rt), all);
    return BL_OK;
}

bl_status_t bl_device_setup(bl_runtime_t *rt, int requested)
{
    rt->device = bl_host_device;
    char line[LINE_BYTES] = "";
    char why[256] = "";
    bl_status_t st = BL_OK;
    const bl_cuda_backend_t *cuda = NULL;
    int count = 0, broken = 0;
    if (requested == BL_DEVICE_MIRROR) {
        rt->device.memory = &bl_mirror_memory;
        rt->device.kernels_bf16 = &bl_cpu_bf16_kernels;
        rt->device.kind = BL_DEVICE_MIRROR;
        snprintf(rt->device.name, sizeof rt->device.name, "mirror");
    } else if (requested == BL_DEVICE_CUDA || requested == BL_DEVICE_AUTO) {
        count = visible_gpus(&cuda, &broken, why, sizeof why);
        if (cuda != NULL) {
            bl_log(rt, BL_LOG_DEBUG, "rank %d: CUDA backend %s", rt->rank, bl_cuda_backend_file());
        }
        if (count == 0 && requested == BL_DEVICE_CUDA) {
            st = bl_fail(rt,
#ifdef BALLAST_HAVE_CUDA
                         BL_ERR_CUDA,
#else
                         BL_ERR_UNSUPPORTED,
#endif
                         "rank %d: device cuda was asked for but %s; use --device cpu or auto",
                         rt->rank, why);
        } else if (count == 0) {
            /* A backend that is there but does not load means that the
             * node is set up wrongly, so it is logged as a warning, not only
             * at debug level, and it goes into rank 0's report of the
             * devices, whichever rank it is on. */
            bl_log(rt, broken ? BL_LOG_WARN : BL_LOG_DEBUG,
                   "rank %d: device auto: no GPU (%s); computing on the CPU", rt->rank, why);
            if (broken) {
                snprintf(line, LINE_BYTES, "rank %d: computing on the CPU: %.200s", rt->rank, why);
            }
        }
    }
    MPI_Comm peers = MPI_COMM_NULL;
    int place = 0;
    bl_status_t placed =
        gpu_peers(rt, st == BL_OK && count > 0 ? visible_set(cuda, count) : 0, &peers);
    if (placed == BL_OK) {
        MPI_Comm_rank(peers, &place);
    }
    if (st == BL_OK) {
        st = placed;
    }
    int gpu = st == BL_OK ? bl_gpu_choose(requested, place, count) : -1;
    if (st == BL_OK && count > 0 && gpu < 0) {
        bl_log(rt, BL_LOG_DEBUG,
               "rank %d: device auto: the node's %d GPUs went to lower ranks; computing on the "
               "CPU",
               rt->rank, count);
        count = 0;
    }
    if (st == BL_OK && count > 0) {
        char err[256] = "";
        if (open_gpu(rt, cuda, gpu, count, line, err, sizeof err) != 0) {
            st = bl_fail(rt, BL_ERR_CUDA, "rank %d: GPU %d of %d: %s", rt->rank, gpu, count, err);
            rt->device = bl_host_device;
        }
    }
    int sharing = 0;
    if (placed == BL_OK) {
        bl_status_t counted = count_sharing(rt, peers, &sharing);
        st = st == BL_OK ? counted : st;
        MPI_Comm_free(&peers);
    }
    if (st == BL_OK && sharing > 1) {
        rt->device.shared = 1;
        snprintf(line + strlen(line), LINE_BYTES - strlen(line),
                 "; shared by %d ranks of this node", sharing);
    }
    /* A rank that failed tells the others before anyone goes on. */
    st = bl_agree(rt, st, BL_ERR_CUDA, "choosing the devices");
    if (st == BL_OK) {
        st = log_gpu_lines(rt, line);
    }
    if (st != BL_OK) {
        bl_device_close(rt);
    }
    rt->device.rt = rt;
    return st;
}

void bl_device_close(bl_runtime_t *rt)
{
    if (rt->device.cuda != NULL) {
        rt->device.cuda->shutdown();
    }
    rt->device = bl_host_device;
}

void *bl_buffer_alloc(bl_runtime_t *rt, const bl_device_t *dev, size_t count, size_t elem_nbytes)
{
    if (dev->memory == NULL) {
        return bl_mem_array(bl_rt_allocator(rt), count, elem_nbytes);
    }
    if (elem_nbytes != 0 && count > SIZE_MAX / elem_nbytes) {
        return NULL;
    }
    void *p = dev->memory->alloc(count * elem_nbytes);
    if (p == NULL) {
        /* The caller reports BL_ERR_NO_MEM, and the device's record of the
         * failed allocation is cleared here, so that it does not fail a
         * later, unrelated check. */
        char err[8];
        dev->memory->finish(err, sizeof err);
    }
    return p;
}

void bl_buffer_free(const bl_allocator_t *a, const bl_device_t *dev, void *ptr)
{
    if (dev == NULL || dev->memory == NULL) {
        bl_mem_free(a, ptr);
    } else {
        dev->memory->release(ptr);
    }
}

/* Runs dev's wait (finish or finish_compute) and returns BL_OK, or
 * BL_ERR_CUDA with a message that names `what`. A device without memory of
 * its own has nothing to wait for. */
static bl_status_t waited(bl_runtime_t *rt, const bl_device_t *dev, const char *what,
                          int (*wait)(char *err, size_t errlen))
{
    char err[256];
    if (dev->memory == NULL || wait(err, sizeof err) == 0) {
        return BL_OK;
    }
    return bl_fail(rt, BL_ERR_CUDA, "rank %d (%s), %s: %s (set BALLAST_LOG=debug for more)",
                   rt->rank, dev->name, what, err);
}

bl_status_t bl_device_check(bl_runtime_t *rt, const bl_device_t *dev, const char *what)
{
    return waited(rt, dev, what, dev->memory != NULL ? dev->memory->finish : NULL);
}

bl_status_t bl_device_check_compute(bl_runtime_t *rt, const bl_device_t *dev, const char *what)
{
    return waited(rt, dev, what, dev->memory != NULL ? dev->memory->finish_compute : NULL);
}
