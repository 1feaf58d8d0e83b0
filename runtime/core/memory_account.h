/* Memory accounting: what one rank holds, in bytes, by kind (parameters,
 * gradients, optimizer state, activations, other buffers), and the limit
 * that a rank must stay within. Each trainer fills a bl_mem_account_t from
 * its real allocations; bl_mem_account_check gathers every rank's account,
 * has rank 0 log one line per rank, and refuses to start when a rank
 * exceeds its limit (the config's, or else its cgroup's memory.max). */
#ifndef BL_MEMORY_ACCOUNT_H
#define BL_MEMORY_ACCOUNT_H

#include <stddef.h>

#include "runtime_impl.h"

/* One rank's bytes by kind, and its largest layer or unit (the one that
 * the refusal message names). Byte counts are doubles so that one MPI
 * datatype carries them and sums never overflow. */
typedef struct bl_mem_account {
    double params;      /* the parameters */
    double grads;       /* the gradients */
    double optimizer;   /* the optimizer's state (momentum; AdamW's m and v) */
    double activations; /* the forward's activations and the backward's buffers */
    double other;       /* other per-batch buffers (token arrays, sample numbers) */
    /* The layer or unit with the most bytes of parameters, gradients and
     * optimizer state, e.g. "layer 3 (dense 4096→4096)", and those bytes. */
    char largest[80];
    double largest_bytes;
} bl_mem_account_t;

/* Returns the sum of a's five kinds. */
double bl_mem_account_total(const bl_mem_account_t *a);

/* Writes nbytes as "512 B", "12.4 KiB", "12.4 MiB", "1.2 GiB" or
 * "3.0 TiB" into buf (n bytes; always terminated when n > 0). */
void bl_mem_format_bytes(double nbytes, char *buf, size_t n);

/* Writes "params 12.4 MiB, grads 12.4 MiB, optimizer 24.9 MiB,
 * activations 130.0 MiB, other 1.0 MiB; total 180.7 MiB" into buf (n
 * bytes; always terminated when n > 0). "other" is left out when 0. */
void bl_mem_account_format(const bl_mem_account_t *a, char *buf, size_t n);

/* Reads a cgroup memory limit file: v2's memory.max ("max" or a number of
 * bytes) or v1's memory.limit_in_bytes (a number). Returns 1 and sets
 * *nbytes for a limit; 0 when there is none (the file is missing or says
 * "max", or the number is 2^60 bytes or more, which v1 writes for none);
 * -1 when the file holds anything else. Local; it never fails otherwise. */
int bl_mem_read_cgroup_limit(const char *path, double *nbytes);

/* Returns this process's memory limit in bytes, or 0 for none: config_limit
 * when it is > 0 (*source "--mem-limit"), else the limit of the process's
 * cgroup when one is set (*source "the cgroup's memory.max", read from
 * /sys/fs/cgroup, v2 then v1). source may be NULL. Local. */
double bl_mem_process_limit(bl_runtime_t *rt, double config_limit, const char **source);

/* Gathers every rank's account `mine` and limit (bl_mem_process_limit of
 * config_limit). Rank 0 logs "memory: rank R: <bl_mem_account_format>" at
 * info for every rank, and when json is not NULL receives in *json a JSON
 * member, "memory":[{"rank":0,"params":...,"total":...,"limit":...},...]
 * with one object per rank, which the caller frees with bl_mem_free
 * (NULL on the other ranks, and when it has no memory: the report is
 * best-effort). Collective over rt->comm. Returns BL_OK when every rank is within its limit;
 * otherwise every rank returns BL_ERR_NO_MEM with a message that names the first rank over its
 * limit, its bytes, its largest layer or unit and that one's bytes, and the limit and where it came
 * from. Failures of the gather return its status. */
bl_status_t bl_mem_account_check(bl_runtime_t *rt, const bl_mem_account_t *mine,
                                 double config_limit, char **json);

#endif /* BL_MEMORY_ACCOUNT_H */
