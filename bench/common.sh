# Shell helpers the benchmark scripts share (POSIX sh, sourced): reading a
# figure from a program's output, medians, and interleaved repetitions.
# Their own variables start with _bench_, so callbacks may use any other.

# bench_field FILE PREFIX KEY: the value of KEY= on the last line of FILE
# that starts with PREFIX; empty when there is none.
bench_field() {
    awk -v p="$2" -v k="$3=" 'index($0, p) == 1 {
        for (i = 1; i <= NF; i++) if (index($i, k) == 1) v = substr($i, length(k) + 1)
    } END { print v }' "$1"
}

# bench_stats FILE: "median min max" of the numbers in FILE, one a line.
bench_stats() {
    sort -g "$1" | awk '{ v[NR] = $1 } END {
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.6g %.6g %.6g\n", m, v[1], v[NR] }'
}

# bench_median FILE: the median of the numbers in FILE, one a line.
bench_median() {
    bench_stats "$1" | cut -d' ' -f1
}

# bench_interleave REPS FUNCTION ITEM...: runs FUNCTION ITEM for every
# ITEM, REPS times; each repetition starts one item later than the one
# before, so load that drifts during the run hits every item alike. Prints
# "rep r/R:" on stderr before each repetition and a newline after it.
bench_interleave() {
    _bench_reps=$1
    _bench_fn=$2
    shift 2
    _bench_r=1
    while [ "$_bench_r" -le "$_bench_reps" ]; do
        printf 'rep %d/%d:' "$_bench_r" "$_bench_reps" >&2
        for _bench_item in "$@"; do
            "$_bench_fn" "$_bench_item"
        done
        echo >&2
        _bench_first=$1
        shift
        set -- "$@" "$_bench_first"
        _bench_r=$((_bench_r + 1))
    done
}

# bench_fortunes NAME FILE: writes the demo's text into FILE, every text of
# the fortunes package concatenated (not the .dat indexes nor the .u8
# links); exits 1, naming the script NAME, when there is none.
bench_fortunes() {
    : >"$2"
    for _bench_f in /usr/share/games/fortunes/*; do
        case $_bench_f in *.dat | *.u8) continue ;; esac
        [ -f "$_bench_f" ] && cat "$_bench_f" >>"$2"
    done
    [ -s "$2" ] || {
        echo "$1: no text: install the fortunes package or pass --text FILE" >&2
        exit 1
    }
}

# bench_prepare NAME PROGRAM: exits 1, naming the script NAME, unless
# PROGRAM is built and $mpirun (default mpirun) and jq are installed; then
# lets Open MPI run as root and gives every rank one BLAS thread.
bench_prepare() {
    [ -x "$2" ] || {
        echo "$1: $2 is missing; build first:" >&2
        echo "  cmake -S . -B build -DBALLAST_TESTS=OFF && cmake --build build -j2" >&2
        exit 1
    }
    command -v "${mpirun:-mpirun}" >/dev/null 2>&1 || {
        echo "$1: '${mpirun:-mpirun}' not found (set MPIRUN)" >&2
        exit 1
    }
    command -v jq >/dev/null 2>&1 || {
        echo "$1: jq not found (apt-get install jq); it reads the telemetry" >&2
        exit 1
    }
    if [ "$(id -u)" = 0 ]; then
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    fi
    export OPENBLAS_NUM_THREADS=1
}

# bench_sim_scenarios NAME SIM LOG LINES PREFIX ARG...: runs SIM ARG...
# --scenario S for every scenario SIM lists, each run's output in LOG,
# appending its "PREFIX:" and "PREFIX-detail:" lines to LINES; prints the
# number of runs. On a failed run: the command and its output on stderr,
# naming the script NAME, and status 1.
bench_sim_scenarios() {
    _bench_name=$1
    _bench_sim=$2
    _bench_log=$3
    _bench_lines=$4
    _bench_prefix=$5
    shift 5
    _bench_runs=0
    for _bench_s in $("$_bench_sim" --scenario list); do
        if ! "$_bench_sim" "$@" --scenario "$_bench_s" >"$_bench_log" 2>&1; then
            echo "$_bench_name: failed: $_bench_sim $* --scenario $_bench_s" >&2
            cat "$_bench_log" >&2
            return 1
        fi
        grep -E "^$_bench_prefix(-detail)?: " "$_bench_log" >>"$_bench_lines"
        _bench_runs=$((_bench_runs + $(grep -c "^$_bench_prefix: " "$_bench_log")))
    done
    echo "$_bench_runs"
}
