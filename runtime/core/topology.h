/* Where each rank runs: its cpuset, its NUMA node and its share of the
 * node's cores, learnt with hwloc; from that, the BLAS threads per rank and
 * a start-up summary per node. Not installed.
 *
 * Two layers. The first is plain hwloc and works on any topology, synthetic
 * ones included, so it is tested without special hardware or MPI. The
 * second is collective over the runtime's communicator: it gathers the
 * places of the ranks of each node, chooses the threads and logs. */
#ifndef BL_TOPOLOGY_H
#define BL_TOPOLOGY_H

#include <stdint.h>

#include <hwloc.h>

#include "internal.h"

/* The place of one rank on its machine. Counts are over the PUs the
 * topology holds (hwloc leaves out those the process may never use, e.g.
 * outside its cgroup); a topology without cores counts PUs as cores. */
typedef struct bl_rank_place {
    int cores_total;      /* physical cores of the machine */
    int pus_total;        /* processing units (hardware threads) of the machine */
    int cores_bound;      /* cores with at least one PU in the cpuset */
    int pus_bound;        /* PUs in the cpuset */
    int numa_node;        /* OS index of the NUMA node whose cpus hold the whole cpuset; -1 when it
                             spans several or none is known */
    int bound;            /* 1 when the cpuset is smaller than the machine */
    char cpuset[64];      /* the PU set as a list, e.g. "0-3,8"; ends in "..." when cut */
    uint64_t cpuset_hash; /* hash of the whole PU set: equal sets, equal hashes (the text may be
                             cut) */
} bl_rank_place_t;

/* Describes the place of the PU set `binding` in topo (loaded). binding NULL
 * means the whole machine; PUs of binding outside the topology are
 * ignored. Returns BL_OK, BL_ERR_INVALID_ARG (topo or out NULL, or a
 * binding with no PU in the topology) or BL_ERR_NO_MEM (hwloc could not
 * allocate a bitmap); err (may be NULL) says why. On failure *out is
 * unspecified. Allocates through hwloc only and frees what it takes. */
bl_status_t bl_place_describe(hwloc_topology_t topo, hwloc_const_cpuset_t binding,
                              bl_rank_place_t *out, bl_error_t *err);

/* Loads this machine's topology, reads this process's binding (every
 * thread's: HWLOC_CPUBIND_PROCESS; the whole machine when the binding
 * cannot be read or lies outside the topology), describes it into *out and
 * destroys the topology. Returns BL_OK, BL_ERR_INVALID_ARG (out NULL),
 * BL_ERR_IO (hwloc could not load the topology) or BL_ERR_NO_MEM; err says
 * why. Not collective; no MPI. */
bl_status_t bl_place_probe(bl_rank_place_t *out, bl_error_t *err);

/* BLAS threads for a rank at place p when ranks_sharing_cpuset ranks (this
 * one included) are bound to the same cpuset: they split its cores,
 * max(1, cores_bound / ranks_sharing_cpuset). Never below 1; a count
 * below 1 reads as 1, and so does p NULL. */
int bl_threads_default(const bl_rank_place_t *p, int ranks_sharing_cpuset);

/* Learns every rank's place, chooses this rank's BLAS threads and tells the
 * user where ranks run. Collective over the runtime's communicator: every
 * rank must call it.
 *
 * The ranks of one node (MPI_COMM_TYPE_SHARED) exchange their places.
 * threads = requested_threads when > 0, else bl_threads_default() with the
 * count of the node's ranks bound to exactly this rank's cpuset; it is
 * applied with bl_cpu_set_threads (process-wide) and stored in
 * *threads_out. Rank 0 logs one info line per node (host, ranks, cores,
 * each rank's cpus, NUMA node and threads; cut with "..." on crowded
 * nodes), and a warning for a node whose ranks run more threads than it
 * has cores. A rank whose topology cannot be read warns and runs 1 thread
 * rather than fail the job.
 *
 * Returns BL_OK; BL_ERR_INVALID_ARG for rt or threads_out NULL or
 * requested_threads < 0 (checked before any MPI call, so pass the same
 * kind of arguments on every rank); BL_ERR_MPI when an MPI call fails;
 * BL_ERR_NO_MEM when a rank cannot allocate its node's table (then every
 * rank returns it). Failures are recorded for bl_last_error(rt), and
 * *threads_out and the BLAS threads are unchanged. */
bl_status_t bl_topology_setup(bl_runtime_t *rt, int requested_threads, int *threads_out);

#endif /* BL_TOPOLOGY_H */
