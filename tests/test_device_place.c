/* Where a GPU rank goes, without a GPU: the choice of GPU by the rank's
 * place on its node, and the cores near a GPU in an XML topology of two
 * packages with one NUMA node, two cores and one GPU each (PCI devices
 * under each package's host bridge). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ballast.h"
#include "device_place.h"

/* Package p holds NUMA node p, cores 2p and 2p+1, and the GPU at PCI
 * 0000:01:00.0 (p = 0) or 0000:81:00.0 (p = 1). Every object carries its
 * sets as hwloc's own export writes them. */
#define SETS(cpus, nodes)                                                                          \
    " cpuset=\"" cpus "\" complete_cpuset=\"" cpus "\" nodeset=\"" nodes                           \
    "\" complete_nodeset=\"" nodes "\""
#define CORE(os, cpus, nodes, gp)                                                                  \
    "<object type=\"Core\" os_index=\"" #os                                                        \
    "\"" SETS(cpus, nodes) " gp_index=\"" #gp "\">"                                                \
                           "<object type=\"PU\" os_index=\"" #os                                   \
                           "\"" SETS(cpus, nodes) " gp_index=\"1" #gp "\"/></object>"
#define GPU(bus, gp)                                                                               \
    "<object type=\"Bridge\" gp_index=\"" #gp "\" bridge_type=\"0-1\" depth=\"0\" "                \
    "bridge_pci=\"0000:[" #bus "-" #bus "]\">"                                                     \
    "<object type=\"PCIDev\" gp_index=\"1" #gp "\" pci_busid=\"0000:" #bus ":00.0\" "              \
    "pci_type=\"0302 [10de:2335] [10de:18be] a1\" pci_link_speed=\"0.000000\"/></object>"
#define PACKAGE(os, cpus, nodes, gp)                                                               \
    "<object type=\"Package\" os_index=\"" #os                                                     \
    "\"" SETS(cpus, nodes) " gp_index=\"" #gp "\">"                                                \
                           "<object type=\"NUMANode\" os_index=\"" #os "\"" SETS(                  \
                               cpus, nodes) " gp_index=\"1" #gp                                    \
                                            "\"><page_type size=\"4096\" count=\"0\"/></object>"

static const char topology_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<!DOCTYPE topology SYSTEM \"hwloc2.dtd\">\n"
    "<topology version=\"2.0\">"
    "<object type=\"Machine\" os_index=\"0\"" SETS(
        "0x0000000f", "0x00000003") " allowed_cpuset=\"0x0000000f\" allowed_nodeset=\"0x00000003\" "
                                    "gp_index=\"1\">" PACKAGE(0, "0x00000003", "0x00000001", 2)
                                        CORE(0, "0x00000001", "0x00000001", 3)
                                            CORE(1, "0x00000002", "0x00000001", 4)
                                                GPU(01, 5) "</object>" PACKAGE(1, "0x0000000c",
                                                                               "0x00000002", 6)
                                                    CORE(2, "0x00000004", "0x00000002", 7)
                                                        CORE(3, "0x00000008", "0x00000002", 8)
                                                            GPU(81, 9) "</object>"
                                                                       "</object></topology>\n";

static hwloc_topology_t load_topology(void)
{
    hwloc_topology_t topo = NULL;
    assert_int_equal(hwloc_topology_init(&topo), 0);
    assert_int_equal(hwloc_topology_set_xmlbuffer(topo, topology_xml, (int)sizeof topology_xml), 0);
    hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_ALL);
    assert_int_equal(hwloc_topology_load(topo), 0);
    return topo;
}

static void test_gpu_choice(void **state)
{
    (void)state;
    /* cuda: round robin over the GPUs, sharing past their count. */
    assert_int_equal(bl_gpu_choose(BL_DEVICE_CUDA, 0, 2), 0);
    assert_int_equal(bl_gpu_choose(BL_DEVICE_CUDA, 1, 2), 1);
    assert_int_equal(bl_gpu_choose(BL_DEVICE_CUDA, 2, 2), 0);
    assert_int_equal(bl_gpu_choose(BL_DEVICE_CUDA, 5, 4), 1);
    /* auto: a GPU while one is left, then the CPU. */
    assert_int_equal(bl_gpu_choose(BL_DEVICE_AUTO, 0, 1), 0);
    assert_int_equal(bl_gpu_choose(BL_DEVICE_AUTO, 1, 1), -1);
    assert_int_equal(bl_gpu_choose(BL_DEVICE_AUTO, 3, 4), 3);
    assert_int_equal(bl_gpu_choose(BL_DEVICE_AUTO, 4, 4), -1);
    /* No GPU, or a request that wants none. */
    assert_int_equal(bl_gpu_choose(BL_DEVICE_CUDA, 0, 0), -1);
    assert_int_equal(bl_gpu_choose(BL_DEVICE_AUTO, 0, 0), -1);
    assert_int_equal(bl_gpu_choose(BL_DEVICE_CPU, 0, 4), -1);
    assert_int_equal(bl_gpu_choose(BL_DEVICE_MIRROR, 0, 4), -1);
    assert_int_equal(bl_gpu_choose(BL_DEVICE_CUDA, -1, 4), -1);
}

/* An unbound rank is sent to its GPU's package; one the launcher bound is
 * left where it is, and told whether that is near the GPU. */
static void test_gpu_locality(void **state)
{
    (void)state;
    hwloc_topology_t topo = load_topology();
    hwloc_bitmap_t bind_to = hwloc_bitmap_alloc();
    hwloc_bitmap_t current = hwloc_bitmap_alloc();
    char out[160];

    hwloc_bitmap_copy(current, hwloc_topology_get_topology_cpuset(topo));
    assert_int_equal(bl_gpu_locality(topo, "0000:81:00.0", current, bind_to, out, sizeof out), 1);
    assert_string_equal(out, "NUMA node 1, cpus 2-3; bound there");
    hwloc_bitmap_t want = hwloc_bitmap_alloc();
    hwloc_bitmap_set_range(want, 2, 3);
    assert_true(hwloc_bitmap_isequal(bind_to, want));
    /* CUDA may spell the domain with 8 digits; an unknown binding counts
     * as unbound. */
    assert_int_equal(bl_gpu_locality(topo, "00000000:01:00.0", NULL, bind_to, out, sizeof out), 1);
    assert_string_equal(out, "NUMA node 0, cpus 0-1; bound there");

    hwloc_bitmap_only(current, 1);
    assert_int_equal(bl_gpu_locality(topo, "0000:01:00.0", current, bind_to, out, sizeof out), 0);
    assert_string_equal(out, "NUMA node 0, cpus 0-1; bound by the launcher within them");
    assert_int_equal(bl_gpu_locality(topo, "0000:81:00.0", current, bind_to, out, sizeof out), 0);
    assert_non_null(strstr(out, "bound by the launcher elsewhere"));

    assert_int_equal(bl_gpu_locality(topo, "0000:42:00.0", current, bind_to, out, sizeof out), -1);
    assert_string_equal(out, "locality unknown (hwloc does not see PCI device 0000:42:00.0)");

    hwloc_bitmap_free(want);
    hwloc_bitmap_free(current);
    hwloc_bitmap_free(bind_to);
    hwloc_topology_destroy(topo);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpu_choice),
        cmocka_unit_test(test_gpu_locality),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
