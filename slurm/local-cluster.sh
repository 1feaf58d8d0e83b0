#!/bin/sh
# A single-node Slurm on this machine, for tests and for trying the job
# scripts: munge, slurmctld and slurmd with a generated slurm.conf (this
# node's CPUs, one partition "debug"), state and logs under a work
# directory. Needs `apt-get install slurm-wlm munge` (scripts/install-deps.sh
# --slurm) and root.
#   slurm/local-cluster.sh start|stop|status [WORKDIR]
# start waits until the node is idle; stop stops the daemons; status says
# whether the node answers. WORKDIR defaults to /tmp/ballast-slurm.
set -eu

cmd=${1:-}
work=${2:-/tmp/ballast-slurm}
conf=$work/slurm.conf

die() {
    echo "local-cluster: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (the daemons need it)"
for p in slurmctld slurmd munged scontrol sinfo; do
    command -v "$p" >/dev/null 2>&1 || die "$p not found: apt-get install slurm-wlm munge"
done

host=$(hostname -s)
# The machine's CPUs, as slurmd counts them: not nproc, which counts only
# those the caller's CPU affinity allows (started from a process bound to
# one core, the node would offer one CPU, and a 2-task job would wait
# forever).
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc --all)
# The daemons (and so the jobs they start) may run on every online CPU,
# whatever affinity this script inherited.
online=$(cat /sys/devices/system/cpu/online 2>/dev/null || echo "0-$((cpus - 1))")
unbound() {
    if command -v taskset >/dev/null 2>&1; then
        taskset -c "$online" "$@"
    else
        "$@"
    fi
}
# slurmd reports the memory; a little less keeps it from being drained.
mem=$(awk '/^MemTotal:/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)

write_conf() {
    mkdir -p "$work/ctld" "$work/d" "$work/log"
    cat >"$conf" <<EOF
ClusterName=ballast-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$work/ctld
SlurmdSpoolDir=$work/d
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
ReturnToService=2
SchedulerType=sched/backfill
# A small local cluster: look for work every 2 s, not every minute.
SchedulerParameters=sched_interval=2,bf_interval=2
JobRequeue=1
KillWait=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

start_munge() {
    if ! pgrep -x munged >/dev/null 2>&1; then
        [ -s /etc/munge/munge.key ] || {
            mkdir -p /etc/munge
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
            chmod 400 /etc/munge/munge.key
            chown munge:munge /etc/munge/munge.key 2>/dev/null || true
        }
        mkdir -p /run/munge
        chown munge:munge /run/munge 2>/dev/null || true
        if id munge >/dev/null 2>&1; then
            su -s /bin/sh munge -c munged 2>/dev/null || munged --force
        else
            munged --force
        fi
    fi
}

case $cmd in
start)
    write_conf
    start_munge
    export SLURM_CONF=$conf
    pgrep -f "slurmctld -f $conf" >/dev/null 2>&1 || unbound slurmctld -f "$conf" ||
        die "slurmctld did not start; see $work/log/slurmctld.log"
    pgrep -f "slurmd -f $conf" >/dev/null 2>&1 || unbound slurmd -f "$conf" ||
        die "slurmd did not start; see $work/log/slurmd.log"
    i=0
    while [ "$i" -lt 60 ]; do
        state=$(timeout 5 sinfo -h -o %t 2>/dev/null | head -n 1 || true)
        case $state in
        idle* | mix* | alloc*)
            echo "local-cluster: node $host is $state ($cpus CPUs); export SLURM_CONF=$conf"
            exit 0
            ;;
        esac
        sleep 1
        i=$((i + 1))
    done
    echo "local-cluster: the node did not become idle in 60 s; logs in $work/log:" >&2
    tail -n 20 "$work/log/slurmctld.log" "$work/log/slurmd.log" >&2 2>/dev/null || true
    exit 1
    ;;
stop)
    # TERM, then up to 10 s for the daemons to go (KILL after that), so a
    # start right after finds the ports free.
    for d in slurmd slurmctld; do
        pkill -f "$d -f $conf" 2>/dev/null || true
    done
    i=0
    while pgrep -f "slurm[a-z]* -f $conf" >/dev/null 2>&1 && [ "$i" -lt 10 ]; do
        sleep 1
        i=$((i + 1))
    done
    pkill -9 -f "slurm[a-z]* -f $conf" 2>/dev/null || true
    echo "local-cluster: stopped"
    ;;
status)
    export SLURM_CONF=$conf
    if timeout 5 sinfo -h -o '%n %t %c' 2>/dev/null | grep -q .; then
        timeout 5 sinfo -h -o 'local-cluster: node %n is %t (%c CPUs)'
    else
        echo "local-cluster: not running"
        exit 1
    fi
    ;;
*)
    echo "usage: slurm/local-cluster.sh start|stop|status [WORKDIR]" >&2
    exit 2
    ;;
esac
