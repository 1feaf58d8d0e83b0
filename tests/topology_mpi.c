/* bl_topology_setup across ranks: run under `mpirun -np 2`. Each rank sets
 * up twice, with the default threads and then with more threads than the
 * node has cores, prints the lines it logged, and checks them: rank 0
 * logs exactly one node line naming both ranks (one node), and a warning
 * only for the oversubscribed set-up. The failure counts are all-reduced
 * (mpi_check.h), so the exit status is 0 only when every rank passed. */
#include <stdio.h>
#include <string.h>

#include "ballast.h"
#include "mpi_check.h"
#include "topology.h"

enum { MAX_LINES = 8 };

typedef struct captured {
    int lines;
    bl_log_level_t level[MAX_LINES];
    char line[MAX_LINES][2048];
} captured_t;

static void capture(bl_log_level_t level, int rank, const char *line, void *arg)
{
    captured_t *c = arg;
    if (c->lines < MAX_LINES) {
        c->level[c->lines] = level;
        snprintf(c->line[c->lines], sizeof c->line[0], "%s", line);
    }
    c->lines++;
}

/* Sets up with `requested` threads and checks what was logged. */
static void run(bl_runtime_t *rt, captured_t *seen, int requested, int expect_warning)
{
    int rank = bl_runtime_rank(rt), size = bl_runtime_size(rt);
    int threads = 0;
    seen->lines = 0;
    bl_status_t st = bl_topology_setup(rt, requested, &threads);
    check(st == BL_OK, "set-up with %d threads: %s", requested, bl_last_error(rt));
    check(threads >= 1, "threads >= 1");
    check(requested == 0 || threads == requested, "the requested threads");
    for (int i = 0; i < seen->lines && i < MAX_LINES; i++) {
        printf("rank %d logged (%s): %s\n", rank, seen->level[i] == BL_LOG_WARN ? "warn" : "info",
               seen->line[i]);
    }
    if (rank != 0) {
        check(seen->lines == 0, "only rank 0 logs");
        return;
    }
    int node_lines = 0, warnings = 0;
    char ranks[32];
    snprintf(ranks, sizeof ranks, ": %d ranks on", size);
    for (int i = 0; i < seen->lines && i < MAX_LINES; i++) {
        if (seen->level[i] == BL_LOG_INFO && strncmp(seen->line[i], "node ", 5) == 0) {
            node_lines++;
            check(strstr(seen->line[i], ranks) != NULL, "the node line counts every rank");
            check(strstr(seen->line[i], "; rank 0 cpus ") != NULL, "rank 0 listed");
            check(strstr(seen->line[i], ", rank 1 cpus ") != NULL, "rank 1 listed");
        } else if (seen->level[i] == BL_LOG_WARN) {
            warnings++;
            check(strstr(seen->line[i], "BLAS threads on") != NULL, "warning text");
        }
    }
    check(node_lines == 1, "exactly one node line");
    if (expect_warning >= 0) {
        check(warnings == expect_warning, "warning count");
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);

    captured_t seen = {0};
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_INFO;
    cfg.log_fn = capture;
    cfg.log_arg = &seen;
    bl_runtime_t *rt = NULL;
    if (bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt) != BL_OK) {
        printf("rank %d: FAILED: bl_runtime_create\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    bl_rank_place_t here;
    check(bl_place_probe(&here, NULL) == BL_OK, "bl_place_probe");
    /* Default threads: whether that warns depends on the machine and the
     * binding mpirun chose, so only the node line is checked. */
    run(rt, &seen, 0, -1);
    /* Every rank asks for every core: 2 ranks oversubscribe the node. */
    run(rt, &seen, here.cores_total, 1);

    int total = check_total();
    if (rank == 0) {
        printf("%s: %d failure%s\n", total == 0 ? "PASS" : "FAIL", total, total == 1 ? "" : "s");
    }
    bl_runtime_destroy(rt);
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}
