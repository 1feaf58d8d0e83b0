#!/bin/sh
# cpu_quota.sh: a cgroup that holds the processes in it to a fraction of
# one CPU core (the kernel's CFS bandwidth limit), for benchmarks and tests
# that need a really slow rank. Needs root and the cgroup cpu controller:
# cgroup v2 when /sys/fs/cgroup/cgroup.controllers exists (the limit is
# cpu.max), else the v1 cpu hierarchy at /sys/fs/cgroup/cpu
# (cpu.cfs_quota_us of cpu.cfs_period_us). $CPU_QUOTA_PARENT names another
# parent cgroup directory.
#   cpu_quota.sh create NAME FRACTION [SHARES]   makes the cgroup NAME, held
#       to FRACTION of a core (0.5: 50000 us of every 100000 us period; none:
#       no limit), and prints its directory; SHARES is its weight against
#       the processes it competes with (cpu.shares, default 1024 as the
#       kernel's; v2: cpu.weight SHARES*100/1024). Exit 77, saying what is
#       missing, when no cgroup can be made; 1 when NAME exists already
#   cpu_quota.sh run DIR CMD [ARG...]   moves this process into the cgroup
#       DIR, then execs CMD (the same process, so CMD runs held)
#   cpu_quota.sh destroy DIR            moves what still runs in DIR to its
#       parent and removes DIR; a DIR that is gone already is fine
# Exit 2 on bad usage.
set -eu

me=cpu_quota.sh
period=100000 # us; the quota is FRACTION of it

usage() {
    sed -n '9,19p' "$0" >&2
    exit 2
}

# skip MESSAGE: no cgroup can be made here; exit 77 (a skip to ctest).
skip() {
    echo "$me: cannot make a CPU-quota cgroup: $1" >&2
    exit 77
}

# Sets parent (the directory new cgroups go in) and version (1 or 2).
find_parent() {
    if [ -n "${CPU_QUOTA_PARENT:-}" ]; then
        parent=$CPU_QUOTA_PARENT
    elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        parent=/sys/fs/cgroup
    else
        parent=/sys/fs/cgroup/cpu
    fi
    if [ -f "$parent/cgroup.controllers" ]; then
        version=2
        # A child has cpu.max only when the parent hands the controller
        # down; enabling it changes the whole tree, so that is left to the
        # administrator.
        grep -qw cpu "$parent/cgroup.subtree_control" 2>/dev/null ||
            skip "the cpu controller is not enabled for children of $parent (as root: echo +cpu > $parent/cgroup.subtree_control)"
    elif [ -f "$parent/cpu.cfs_quota_us" ]; then
        version=1
    else
        skip "$parent is neither a cgroup v2 directory (no cgroup.controllers) nor a cgroup v1 cpu hierarchy (no cpu.cfs_quota_us)"
    fi
}

# write VALUE FILE: VALUE into FILE; status 1, quietly, when refused.
write() {
    { echo "$1" >"$2"; } 2>/dev/null
}

create() {
    name=$1
    case $name in
    '' | */* | . | ..) echo "$me: create: bad cgroup name '$name'" >&2; exit 2 ;;
    esac
    shares=${3:-1024}
    case $2 in
    none) quota=none ;;
    '' | . | *[!0-9.]* | *.*.*) echo "$me: create: '$2' is not a fraction of a core (e.g. 0.5) nor none" >&2; exit 2 ;;
    *)
        # The kernel refuses a quota below 1 ms.
        quota=$(awk -v f="$2" -v p="$period" 'BEGIN { q = int(f * p + 0.5); print (q < 1000 ? 0 : q) }')
        [ "$quota" -gt 0 ] || { echo "$me: create: $2 is below the smallest quota, 0.01 of a core" >&2; exit 2; }
        ;;
    esac
    case $shares in
    '' | *[!0-9]*) echo "$me: create: shares '$shares' is not a positive integer" >&2; exit 2 ;;
    esac
    if [ "$shares" -lt 2 ] || [ "$shares" -gt 262144 ]; then
        echo "$me: create: shares $shares is outside [2, 262144]" >&2
        exit 2
    fi
    find_parent
    dir=$parent/$name
    [ ! -e "$dir" ] || { echo "$me: create: $dir exists already (remove it: $me destroy $dir)" >&2; exit 1; }
    mkdir "$dir" 2>/dev/null || skip "mkdir $dir failed (root is needed, and a writable cgroup file system)"
    if [ "$version" = 2 ]; then
        [ "$quota" != none ] || quota=max
        weight=$(awk -v s="$shares" 'BEGIN { w = int(s * 100 / 1024 + 0.5); print (w < 1 ? 1 : w > 10000 ? 10000 : w) }')
        write "$quota $period" "$dir/cpu.max" || { rmdir "$dir"; skip "$dir/cpu.max refused '$quota $period'"; }
        write "$weight" "$dir/cpu.weight" || { rmdir "$dir"; skip "$dir/cpu.weight refused $weight"; }
    else
        [ "$quota" != none ] || quota=-1
        # The period first: the quota is checked against it.
        if ! { write "$period" "$dir/cpu.cfs_period_us" && write "$quota" "$dir/cpu.cfs_quota_us"; }; then
            rmdir "$dir"
            skip "$dir refused cpu.cfs_quota_us $quota of cpu.cfs_period_us $period"
        fi
        write "$shares" "$dir/cpu.shares" || { rmdir "$dir"; skip "$dir/cpu.shares refused $shares"; }
    fi
    echo "$dir"
}

run() {
    dir=$1
    shift
    [ $# -gt 0 ] || usage
    [ -f "$dir/cgroup.procs" ] || { echo "$me: run: $dir is not a cgroup (no cgroup.procs)" >&2; exit 1; }
    # $$ is this shell; exec keeps its process, so CMD stays in the cgroup.
    write $$ "$dir/cgroup.procs" || { echo "$me: run: cannot move process $$ into $dir" >&2; exit 1; }
    exec "$@"
}

destroy() {
    dir=$1
    [ -d "$dir" ] || exit 0
    [ -f "$dir/cgroup.procs" ] || { echo "$me: destroy: $dir is not a cgroup (no cgroup.procs)" >&2; exit 1; }
    up=$(dirname "$dir")
    tries=0
    # A process that is exiting may stay listed for a moment.
    until rmdir "$dir" 2>/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -le 5 ] || { echo "$me: destroy: cannot remove $dir; it holds: $(tr '\n' ' ' <"$dir/cgroup.procs")" >&2; exit 1; }
        while read -r pid; do
            write "$pid" "$up/cgroup.procs" || :
        done <"$dir/cgroup.procs"
        sleep 1
    done
}

[ $# -ge 2 ] || usage
cmd=$1
shift
case $cmd in
create) [ $# -eq 2 ] || [ $# -eq 3 ] || usage; create "$@" ;;
run) run "$@" ;;
destroy) [ $# -eq 1 ] || usage; destroy "$1" ;;
*) usage ;;
esac
