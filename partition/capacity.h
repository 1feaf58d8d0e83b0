/* CPU budgets: the shard a rank held by a CPU quota can take without
 * stalling the step. Internal to partition/ (policy.c applies it).
 *
 * Why. A rank in a cgroup with a CPU quota of q cores computes at full
 * speed until each period's quota is spent, then not at all. Its average
 * speed (what the estimator sees) is about q times its full speed, and a
 * plan proportional to it keeps the rank busy for about q of every step:
 * right at its quota, so that in some periods it runs out and stops while
 * the others wait for it. Measured on 2 ranks, rank 1 at half a core
 * (MLP 1024x3, batch 256): the proportional split 171,85 has rank 1 use
 * 0.021 CPU seconds in a 0.030 s step and stall every other step; the best
 * split, 212,44 (a sweep), has it use 0.0164 CPU seconds of a 0.0331 s
 * step, just its quota, and never stall. The difference is the CPU a rank
 * spends on a step beyond its samples (the gradient reduction, the update),
 * which the quota pays too.
 *
 * The model. Rank i's CPU seconds per step are c_i + k_i · b_i for a shard
 * of b_i samples: k_i its CPU seconds per sample at full speed, c_i what
 * the step costs it beyond its samples. A step of T seconds gives it
 * q_i · T CPU seconds, so b_i <= (q_i · T − c_i) / k_i. The step time is
 * set by the ranks without a quota: T = (B − Σ_quota b_i) / V + s, with V
 * their summed speed and s their seconds per step beyond compute. The
 * largest shards that fit are the fixed point of both, which bisection on
 * T finds (the first is increasing in T, the second decreasing). With the
 * measurement above, it gives rank 1 44 samples: the sweep's best. */
#ifndef BL_PARTITION_CAPACITY_H
#define BL_PARTITION_CAPACITY_H

/* One rank's CPU budget. */
typedef struct bl_cpu_budget {
    double quota;      /* cores of CPU time its cgroup allows; 0: no quota (no cap) */
    double per_sample; /* k: CPU seconds per sample at full speed; 0: unknown (no cap) */
    double per_step;   /* c: CPU seconds per step beyond its samples */
} bl_cpu_budget_t;

/* Writes into cap (ranks values) the most samples each rank with a known
 * budget can take per step, and batch for the others. speed holds the
 * ranks' speeds (samples per second of compute; > 0), batch is B, and
 * overhead_s the unconstrained ranks' seconds per step beyond compute.
 * Returns the number of ranks capped (0 when none has a known budget, or
 * when every rank has one: then no rank sets the pace). */
int bl_part_cpu_caps(int ranks, long batch, const double *speed, const bl_cpu_budget_t *budget,
                     double overhead_s, long *cap);

#endif /* BL_PARTITION_CAPACITY_H */
