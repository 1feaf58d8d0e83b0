# The language-model trainer's evaluation through the pipeline
# (runtime/lm/lm_eval_pipe.c; labels unit;mpi): pp 2, pp 3, the 2 × 2
# hybrid and pp 4, with stage-local memory off and on, equal one process's
# evaluation of the same parameters within 1e-5 relative, in the middle of
# a run and with other stages' units poisoned; a stage whose user layer
# fails mid-evaluation fails every rank and leaves the pipeline clean.
# Included after dp_tests.cmake (bl_mpi_program).
bl_mpi_program(test_lm_pipe_eval 2 3 4)
target_link_libraries(test_lm_pipe_eval PRIVATE ${MATH_LIBRARY})
