/* The CPU quota of this process's cgroup (the kernel's CFS bandwidth
 * limit): how many cores' worth of CPU time the process may use per period,
 * whatever cores it is bound to. A rank held to half a core computes at
 * full speed until its quota for the period is spent, then stops until the
 * next period, so its steps come in bursts. The topology report names such
 * ranks (topology.c), and the telemetry's cpu_s shows what they get. */
#ifndef BL_CPU_QUOTA_H
#define BL_CPU_QUOTA_H

#include <stddef.h>

/* Parses cgroup v2's cpu.max ("QUOTA PERIOD" in microseconds, QUOTA "max"
 * for none): 1 with *cores = QUOTA / PERIOD, 0 when there is no limit, -1
 * when the text is neither. */
int bl_cpu_quota_parse_max(const char *text, double *cores);

/* Parses cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us contents (a
 * quota of -1 is none): 1, 0 or -1 as bl_cpu_quota_parse_max. */
int bl_cpu_quota_parse_v1(const char *quota, const char *period, double *cores);

/* The quota, in cores, of the cgroup that `proc_cgroup` (the text of
 * /proc/self/cgroup) names under the cgroup file system at `root`
 * ("/sys/fs/cgroup" on a live system): v2's cpu.max of the process's
 * cgroup ("0::/path"), else v1's cpu.cfs_quota_us of the hierarchy whose
 * controllers include cpu ("N:cpu,cpuacct:/path", looked for under
 * ROOT/cpu and ROOT/cpu,cpuacct). Returns 0 when no limit is set or none
 * can be read; with a limit, writes the file it came from into source (n
 * bytes; may be NULL). */
double bl_cpu_quota_find(const char *root, const char *proc_cgroup, char *source, size_t n);

/* bl_cpu_quota_find for this process on the live system. */
double bl_cpu_quota_cores(char *source, size_t n);

#endif /* BL_CPU_QUOTA_H */
