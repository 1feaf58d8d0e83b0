/* Topology: places described on synthetic hwloc topologies (any machine
 * runs them), the thread default, the probe of this machine, and the
 * collective set-up on MPI_COMM_SELF with its log lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include <cblas.h>

#include "topology.h"
#include "test_support.h"

static bl_runtime_t *rt;

/* A loaded synthetic topology, e.g. "pack:2 core:4 pu:2". */
static hwloc_topology_t synthetic(const char *description)
{
    hwloc_topology_t topo = NULL;
    assert_int_equal(hwloc_topology_init(&topo), 0);
    assert_int_equal(hwloc_topology_set_synthetic(topo, description), 0);
    assert_int_equal(hwloc_topology_load(topo), 0);
    return topo;
}

/* The PU set of the object of `type` with logical index `index`. */
static hwloc_bitmap_t cpuset_of(hwloc_topology_t topo, hwloc_obj_type_t type, unsigned index)
{
    hwloc_obj_t obj = hwloc_get_obj_by_type(topo, type, index);
    assert_non_null(obj);
    hwloc_bitmap_t set = hwloc_bitmap_dup(obj->cpuset);
    assert_non_null(set);
    return set;
}

/* The PU set lo..hi (OS indices). */
static hwloc_bitmap_t pu_range(unsigned lo, unsigned hi)
{
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    assert_non_null(set);
    assert_int_equal(hwloc_bitmap_set_range(set, lo, (int)hi), 0);
    return set;
}

static void test_whole_machine(void **state)
{
    bl_rank_place_t p;
    bl_error_t err = {0};

    /* Two packages of four 2-way SMT cores, one NUMA node. */
    hwloc_topology_t smt = synthetic("pack:2 core:4 pu:2");
    assert_int_equal(bl_place_describe(smt, NULL, &p, &err), BL_OK);
    assert_int_equal(p.cores_total, 8);
    assert_int_equal(p.pus_total, 16);
    assert_int_equal(p.cores_bound, 8);
    assert_int_equal(p.pus_bound, 16);
    assert_int_equal(p.bound, 0);
    assert_int_equal(p.numa_node, 0);
    assert_string_equal(p.cpuset, "0-15");
    /* A binding equal to the machine is no binding either. */
    hwloc_bitmap_t all = pu_range(0, 15);
    assert_int_equal(bl_place_describe(smt, all, &p, &err), BL_OK);
    assert_int_equal(p.bound, 0);
    hwloc_bitmap_free(all);
    hwloc_topology_destroy(smt);

    /* Two NUMA nodes of two cores: the whole machine is on neither. */
    hwloc_topology_t numa = synthetic("numa:2 core:2 pu:1");
    assert_int_equal(bl_place_describe(numa, NULL, &p, &err), BL_OK);
    assert_int_equal(p.cores_total, 4);
    assert_int_equal(p.pus_total, 4);
    assert_int_equal(p.cores_bound, 4);
    assert_int_equal(p.bound, 0);
    assert_int_equal(p.numa_node, -1);
    assert_string_equal(p.cpuset, "0-3");
    hwloc_topology_destroy(numa);
}

static void test_bound_to_one_core(void **state)
{
    bl_rank_place_t p;
    bl_error_t err = {0};

    hwloc_topology_t smt = synthetic("pack:2 core:4 pu:2");
    hwloc_bitmap_t core5 = cpuset_of(smt, HWLOC_OBJ_CORE, 5); /* second package */
    assert_int_equal(bl_place_describe(smt, core5, &p, &err), BL_OK);
    assert_int_equal(p.cores_total, 8);
    assert_int_equal(p.cores_bound, 1);
    assert_int_equal(p.pus_bound, 2); /* both hardware threads */
    assert_int_equal(p.bound, 1);
    assert_int_equal(p.numa_node, 0);
    assert_string_equal(p.cpuset, "10-11");
    hwloc_bitmap_free(core5);

    /* One hardware thread of a core still occupies that core. */
    hwloc_bitmap_t pu0 = pu_range(0, 0);
    assert_int_equal(bl_place_describe(smt, pu0, &p, &err), BL_OK);
    assert_int_equal(p.cores_bound, 1);
    assert_int_equal(p.pus_bound, 1);
    assert_string_equal(p.cpuset, "0");
    hwloc_bitmap_free(pu0);
    /* A thread of each of two cores occupies both. */
    hwloc_bitmap_t straddle = pu_range(1, 2);
    assert_int_equal(bl_place_describe(smt, straddle, &p, &err), BL_OK);
    assert_int_equal(p.cores_bound, 2);
    assert_int_equal(p.pus_bound, 2);
    assert_string_equal(p.cpuset, "1-2");
    hwloc_bitmap_free(straddle);
    hwloc_topology_destroy(smt);

    hwloc_topology_t numa = synthetic("numa:2 core:2 pu:1");
    hwloc_bitmap_t core3 = cpuset_of(numa, HWLOC_OBJ_CORE, 3);
    assert_int_equal(bl_place_describe(numa, core3, &p, &err), BL_OK);
    assert_int_equal(p.cores_bound, 1);
    assert_int_equal(p.pus_bound, 1);
    assert_int_equal(p.numa_node, 1);
    assert_int_equal(p.bound, 1);
    assert_string_equal(p.cpuset, "3");
    hwloc_bitmap_free(core3);
    /* Both cores of the first node: on node 0. */
    hwloc_bitmap_t node0 = pu_range(0, 1);
    assert_int_equal(bl_place_describe(numa, node0, &p, &err), BL_OK);
    assert_int_equal(p.numa_node, 0);
    assert_int_equal(p.cores_bound, 2);
    hwloc_bitmap_free(node0);
    hwloc_topology_destroy(numa);
}

static void test_binding_across_numa_nodes(void **state)
{
    bl_rank_place_t p;
    bl_error_t err = {0};
    hwloc_topology_t numa = synthetic("numa:2 core:2 pu:1");
    hwloc_bitmap_t span = pu_range(1, 2); /* last core of node 0, first of node 1 */
    assert_int_equal(bl_place_describe(numa, span, &p, &err), BL_OK);
    assert_int_equal(p.numa_node, -1);
    assert_int_equal(p.cores_bound, 2);
    assert_int_equal(p.bound, 1);
    assert_string_equal(p.cpuset, "1-2");
    hwloc_bitmap_free(span);
    hwloc_topology_destroy(numa);
}

static void test_binding_outside_topology(void **state)
{
    bl_rank_place_t p;
    bl_error_t err = {0};
    hwloc_topology_t numa = synthetic("numa:2 core:2 pu:1");

    /* PUs the topology does not hold are ignored... */
    hwloc_bitmap_t extra = pu_range(0, 1);
    assert_int_equal(hwloc_bitmap_set(extra, 100), 0);
    assert_int_equal(bl_place_describe(numa, extra, &p, &err), BL_OK);
    assert_string_equal(p.cpuset, "0-1");
    assert_int_equal(p.pus_bound, 2);
    assert_int_equal(p.numa_node, 0);
    hwloc_bitmap_free(extra);

    /* ... and a binding made only of them is refused. */
    hwloc_bitmap_t outside = pu_range(100, 101);
    assert_int_equal(bl_place_describe(numa, outside, &p, &err), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(err.msg, "no PU"));
    hwloc_bitmap_free(outside);

    assert_int_equal(bl_place_describe(NULL, NULL, &p, &err), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_place_describe(numa, NULL, NULL, NULL), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_place_probe(NULL, &err), BL_ERR_INVALID_ARG);
    hwloc_topology_destroy(numa);
}

static void test_long_cpuset_text_is_cut(void **state)
{
    bl_rank_place_t even, odd, even_again;
    bl_error_t err = {0};
    hwloc_topology_t many = synthetic("core:256 pu:1");
    hwloc_bitmap_t evens = hwloc_bitmap_alloc();
    hwloc_bitmap_t odds = hwloc_bitmap_alloc();
    for (unsigned i = 0; i < 256; i += 2) {
        hwloc_bitmap_set(evens, i);
        hwloc_bitmap_set(odds, i + 1);
    }
    assert_int_equal(bl_place_describe(many, evens, &even, &err), BL_OK);
    assert_int_equal(bl_place_describe(many, odds, &odd, &err), BL_OK);
    assert_int_equal(bl_place_describe(many, evens, &even_again, &err), BL_OK);
    assert_int_equal(even.cores_bound, 128);
    assert_int_equal(strlen(even.cpuset), sizeof even.cpuset - 1);
    assert_string_equal(even.cpuset + sizeof even.cpuset - 4, "...");
    assert_memory_equal(even.cpuset, "0,2,4,6,8,", 10);
    /* The hash tells whole sets apart; the text alone may not. */
    assert_true(even.cpuset_hash == even_again.cpuset_hash);
    assert_true(even.cpuset_hash != odd.cpuset_hash);
    hwloc_bitmap_free(evens);
    hwloc_bitmap_free(odds);
    hwloc_topology_destroy(many);
}

static void test_threads_default(void **state)
{
    bl_rank_place_t p = {.cores_bound = 4};
    assert_int_equal(bl_threads_default(&p, 1), 4);
    assert_int_equal(bl_threads_default(&p, 2), 2);
    assert_int_equal(bl_threads_default(&p, 3), 1);
    assert_int_equal(bl_threads_default(&p, 5), 1); /* never 0 */
    assert_int_equal(bl_threads_default(&p, 0), 4); /* reads as 1 */
    p.cores_bound = 1;
    assert_int_equal(bl_threads_default(&p, 2), 1);
    p.cores_bound = 0;
    assert_int_equal(bl_threads_default(&p, 1), 1);
    assert_int_equal(bl_threads_default(NULL, 1), 1);
}

static void test_probe_this_machine(void **state)
{
    bl_rank_place_t p;
    bl_error_t err = {0};
    assert_int_equal(bl_place_probe(&p, &err), BL_OK);
    assert_true(p.cores_total >= 1);
    assert_true(p.pus_total >= p.cores_total);
    assert_true(p.cores_bound >= 1 && p.cores_bound <= p.cores_total);
    assert_true(p.pus_bound >= p.cores_bound && p.pus_bound <= p.pus_total);
    assert_true(p.cpuset[0] != '\0');
    assert_true(p.numa_node >= -1);
}

/* ---- the collective set-up on one rank ---- */

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

/* A runtime on MPI_COMM_SELF logging at info into `seen`. */
static bl_runtime_t *capturing_runtime(captured_t *seen, counting_allocator_t *counter)
{
    bl_config_t cfg = BL_CONFIG_INIT;
    cfg.log_level = BL_LOG_INFO;
    cfg.log_fn = capture;
    cfg.log_arg = seen;
    if (counter != NULL) {
        cfg.allocator.alloc = counting_alloc;
        cfg.allocator.release = counting_release;
        cfg.allocator.ctx = counter;
    }
    bl_runtime_t *r = NULL;
    assert_int_equal(bl_runtime_create(MPI_COMM_SELF, &cfg, &r), BL_OK);
    seen->lines = 0; /* bl_runtime_create ran the set-up once already */
    return r;
}

static void test_setup_one_rank(void **state)
{
    char host[MPI_MAX_PROCESSOR_NAME];
    int host_len = 0;
    assert_int_equal(MPI_Get_processor_name(host, &host_len), MPI_SUCCESS);
    bl_rank_place_t here;
    assert_int_equal(bl_place_probe(&here, NULL), BL_OK);

    captured_t seen = {0};
    bl_runtime_t *r = capturing_runtime(&seen, NULL);
    int threads = 0;
    assert_int_equal(bl_topology_setup(r, 0, &threads), BL_OK);
    assert_true(threads >= 1);
    /* Alone on its cpuset, the rank takes every core of it. */
    assert_int_equal(threads, bl_threads_default(&here, 1));
    assert_int_equal(seen.lines, 1);
    assert_int_equal(seen.level[0], BL_LOG_INFO);
    assert_non_null(strstr(seen.line[0], "1 rank on"));
    assert_non_null(strstr(seen.line[0], host));
    assert_non_null(strstr(seen.line[0], "rank 0 cpus "));

    /* An explicit count wins. */
    seen.lines = 0;
    assert_int_equal(bl_topology_setup(r, 3, &threads), BL_OK);
    assert_int_equal(threads, 3);
    assert_non_null(strstr(seen.line[0], "threads 3"));

    /* More threads than the node has cores: a warning that says so. */
    seen.lines = 0;
    int too_many = here.cores_total + 1;
    assert_int_equal(bl_topology_setup(r, too_many, &threads), BL_OK);
    assert_int_equal(threads, too_many);
    assert_int_equal(seen.lines, 2);
    assert_int_equal(seen.level[1], BL_LOG_WARN);
    char expect[128];
    snprintf(expect, sizeof expect, "1 rank run %d BLAS threads on %d core", too_many,
             here.cores_total);
    assert_non_null(strstr(seen.line[1], expect));
    assert_non_null(strstr(seen.line[1], "--threads"));
    assert_non_null(strstr(seen.line[1], host));

    /* Applied to OpenBLAS (a count below its compile-time cap). */
    assert_int_equal(bl_topology_setup(r, 1, &threads), BL_OK);
    assert_int_equal(openblas_get_num_threads(), 1);
    bl_runtime_destroy(r);
}

static void test_setup_rejects_bad_input(void **state)
{
    int threads = 7;
    assert_int_equal(bl_topology_setup(NULL, 0, &threads), BL_ERR_INVALID_ARG);
    assert_int_equal(bl_topology_setup(rt, -1, &threads), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "negative"));
    assert_int_equal(bl_topology_setup(rt, 0, NULL), BL_ERR_INVALID_ARG);
    assert_non_null(strstr(bl_last_error(rt), "threads_out"));
    assert_int_equal(threads, 7);
}

static void test_setup_allocation_failures(void **state)
{
    for (long fail_at = 1;; fail_at++) {
        counting_allocator_t counter = {0};
        captured_t seen = {0};
        bl_runtime_t *r = capturing_runtime(&seen, &counter);
        counter.fail_at = counter.allocs + fail_at; /* counted from after create */
        int threads = -5;
        bl_status_t st = bl_topology_setup(r, 2, &threads);
        bl_runtime_destroy(r);
        assert_int_equal(counter.allocs, counter.releases);
        if (st == BL_OK) {
            assert_int_equal(threads, 2);
            break;
        }
        assert_int_equal(st, BL_ERR_NO_MEM);
        assert_int_equal(threads, -5);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_machine),
        cmocka_unit_test(test_bound_to_one_core),
        cmocka_unit_test(test_binding_across_numa_nodes),
        cmocka_unit_test(test_binding_outside_topology),
        cmocka_unit_test(test_long_cpuset_text_is_cut),
        cmocka_unit_test(test_threads_default),
        cmocka_unit_test(test_probe_this_machine),
        cmocka_unit_test(test_setup_one_rank),
        cmocka_unit_test(test_setup_rejects_bad_input),
        cmocka_unit_test(test_setup_allocation_failures),
    };
    return run_tests_with_runtime("test_topology", tests, sizeof tests / sizeof tests[0], &rt);
}
