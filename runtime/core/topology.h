/* Where each rank runs: its cpuset, its NUMA node and its share of the
 * node's cores, learnt with hwloc. From that come the BLAS threads per rank
 * and a start-up summary per node. This header is not installed.
 *
 * The module has two layers. The first is plain hwloc and works on any
 * topology, synthetic ones included, so it is tested without special
 * hardware or MPI. The second is collective over the runtime's
 * communicator: it gathers the places of the ranks of each node, chooses
 * the threads and logs. */
#ifndef BL_TOPOLOGY_H
#define BL_TOPOLOGY_H

#include <stdint.h>

#include <hwloc.h>

#include "internal.h"

/* The place of one rank on its machine. The counts are over the PUs that
 * the topology holds (hwloc leaves out those that the process may never
 * use, e.g. PUs outside its cgroup); a topology without cores counts PUs as
 * cores. */
typedef struct bl_rank_place {
    int cores_total;      /* physical cores of the machine */
    int pus_total;        /* processing units (hardware threads) of the machine */
    int cores_bound;      /* cores with at least one PU in the cpuset */
    int pus_bound;        /* PUs in the cpuset */
    int numa_node;        /* OS index of the NUMA node whose cpus hold the whole cpuset; -1 when it
                             spans several or none is known */
    int bound;            /* 1 when the cpuset is smaller than the machine */
    char cpuset[64];      /* the PU set as a list, e.g. "0-3,8"; ends in "..." when cut */
    uint64_t cpuset_hash; /* hash of the whole PU set; equal sets have equal hashes (the text may
                             be cut) */
} bl_rank_place_t;

/* Describes into *out the place of the PU set `binding` in topo, which must
 * be loaded. A NULL binding means the whole machine; the PUs of binding
 * outside the topology are ignored. Returns BL_OK, BL_ERR_INVALID_ARG (topo
 * or out is NULL, or the binding has no PU in the topology) or
 * BL_ERR_NO_MEM (hwloc could not allocate a bitmap); err (which may be NULL)
 * says why. On failure *out is unspecified. The function allocates through
 * hwloc only and frees what it takes. */
bl_status_t bl_place_describe(hwloc_topology_t topo, hwloc_const_cpuset_t binding,
                              bl_rank_place_t *out, bl_error_t *err);

/* Loads this machine's topology, reads this process's binding, describes
 * it into *out and destroys the topology. The binding is every thread's
 * (HWLOC_CPUBIND_PROCESS), and it reads as the whole machine when it cannot
 * be read or lies outside the topology. Returns BL_OK, BL_ERR_INVALID_ARG
 * (out is NULL), BL_ERR_IO (hwloc could not load the topology) or
 * BL_ERR_NO_MEM; err says why. It is not collective and makes no MPI call. */
bl_status_t bl_place_probe(bl_rank_place_t *out, bl_error_t *err);

/* Returns the BLAS threads for a rank at place p when ranks_sharing_cpuset
 * ranks (this one included) are bound to the same cpuset. The ranks split
 * its cores: max(1, cores_bound / ranks_sharing_cpuset). The result is never
 * below 1; a count below 1 reads as 1, and a NULL p gives 1. */
int bl_threads_default(const bl_rank_place_t *p, int ranks_sharing_cpuset);

/* Learns every rank's place, chooses this rank's BLAS threads and tells the
 * user where the ranks run. Collective over the runtime's communicator:
 * every rank must call it.
 *
 * Returns BL_OK; BL_ERR_INVALID_ARG when rt or threads_out is NULL or
 * requested_threads is below 0 (this is checked before any MPI call, so pass
 * the same kind of arguments on every rank); BL_ERR_MPI when an MPI call
 * fails; BL_ERR_NO_MEM when a rank cannot allocate its node's table (and
 * then every rank returns it). Failures are recorded for bl_last_error(rt),
 * and *threads_out and the BLAS threads are then unchanged.
 *
 * The ranks of one node (MPI_COMM_TYPE_SHARED) exchange their places. The
 * threads are requested_threads when it is above 0, else bl_threads_default()
 * with the count of the node's ranks bound to exactly this rank's cpuset.
 * They are applied with bl_cpu_set_threads (process-wide) and stored in
 * *threads_out. Rank 0 logs one info line per node (the host, the ranks,
 * the cores, and each rank's cpus, NUMA node and threads, cut with "..." on
 * crowded nodes), and a warning for a node whose ranks run more threads
 * than it has cores. A rank whose topology cannot be read warns and runs 1
 * thread rather than fail the job. */
bl_status_t bl_topology_setup(bl_runtime_t *rt, int requested_threads, int *threads_out);

#endif /* BL_TOPOLOGY_H */
