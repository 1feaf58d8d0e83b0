# The node-then-network gradient reduction (runtime/parallel/node_reduce.c) on
# one machine, through the BALLAST_PRETEND_NODES override that cuts the group's
# ranks into pretend nodes of consecutive ranks. Each run equals the
# one-process run within 1e-5, and its log shows that the cross-node path ran.
# Included after dp_tests.cmake (bl_dp_run, dp_ref, compare_params).

# bl_node_case(NAME RANKS NODES EXTRA_FLAGS...): trains on RANKS ranks cut into
# NODES pretend nodes into node_NAME.bin, checks the log line of the path, and
# compares the parameters with the one-process reference.
function(bl_node_case name ranks nodes)
    math(EXPR per "${ranks} / ${nodes}")
    bl_cli_test(node_${name} EXIT 0
        MATCH "^summary: steps=25 "
              "BALLAST_PRETEND_NODES=${nodes}: the ${ranks} ranks of the data-parallel group are ${nodes} pretend nodes of ${per} consecutive ranks"
              "gradient reduction: shared memory within ${nodes} pretend nodes of ${per} ranks, then MPI across nodes"
        COMMAND env BALLAST_PRETEND_NODES=${nodes} BALLAST_LOG=info ${BL_MPIRUN} ${ranks}
                --oversubscribe ${BL_CLI_TRAIN} ${bl_dp_run} ${ARGN}
                --save-params ${BL_CLI_OUT}/node_${name}.bin
        REQUIRES cli_data_good cli_out SETUP node_${name})
    bl_cli_test(node_${name}_equals_one_process EXIT 0 MATCH " 0 outside "
        COMMAND $<TARGET_FILE:compare_params> ${BL_CLI_OUT}/node_${name}.bin
                ${BL_CLI_OUT}/dp_ref.bin 1e-5 1e-6
        REQUIRES dp_ref node_${name})
    set_tests_properties(cli_node_${name} cli_node_${name}_equals_one_process PROPERTIES
        LABELS "cli;mpi")
endfunction()

# One rank per pretend node: the cross-node all-reduce does all the summing.
bl_node_case(np2_nodes2 2 2)
bl_node_case(np3_nodes3 3 3)
# Two nodes of two ranks: shared memory within each, then MPI between them.
bl_node_case(np4_nodes2 4 2)
# Uneven shards, with a rank that computes nothing.
bl_node_case(uneven4_nodes2 4 2 --shards 3,0,17,12)
bl_node_case(uneven6_nodes3 6 3 --shards 5,0,9,3,15,0)
# One pretend node is today's node-local reduction.
bl_cli_test(node_np4_nodes1 EXIT 0 MATCH "^summary: steps=25 "
    "!then MPI across nodes"
    COMMAND env BALLAST_PRETEND_NODES=1 BALLAST_LOG=info ${BL_MPIRUN} 4 --oversubscribe
            ${BL_CLI_TRAIN} ${bl_dp_run} --save-params ${BL_CLI_OUT}/node_np4_nodes1.bin
    REQUIRES cli_data_good cli_out SETUP node_np4_nodes1)
bl_cli_test(node_np4_nodes1_equals_one_process EXIT 0 MATCH " 0 outside "
    COMMAND $<TARGET_FILE:compare_params> ${BL_CLI_OUT}/node_np4_nodes1.bin
            ${BL_CLI_OUT}/dp_ref.bin 1e-5 1e-6
    REQUIRES dp_ref node_np4_nodes1)

# Bad overrides: refused before training, naming the variable, even with the
# node reduction off.
bl_cli_test(node_pretend_not_dividing EXIT 1
    MATCH "BALLAST_PRETEND_NODES=3 does not divide the 4 ranks of the data-parallel group"
          "!^summary:"
    COMMAND env BALLAST_PRETEND_NODES=3 ${BL_MPIRUN} 4 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_dp_run}
    REQUIRES cli_data_good)
bl_cli_test(node_pretend_not_dividing_off EXIT 1
    MATCH "BALLAST_PRETEND_NODES=3 does not divide the 2 ranks of the data-parallel group"
          "!^summary:"
    COMMAND env BALLAST_PRETEND_NODES=3 ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_dp_run} --node-reduce off
    REQUIRES cli_data_good)
bl_cli_test(node_pretend_not_a_number EXIT 1
    MATCH "BALLAST_PRETEND_NODES='two' is not a positive whole number of nodes" "!^summary:"
    COMMAND env BALLAST_PRETEND_NODES=two ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            ${bl_dp_run}
    REQUIRES cli_data_good)
set_tests_properties(cli_node_np4_nodes1 cli_node_np4_nodes1_equals_one_process
    cli_node_pretend_not_dividing cli_node_pretend_not_dividing_off cli_node_pretend_not_a_number
    PROPERTIES LABELS "cli;mpi")
