# ballast-report end to end (label cli): the summary and non-empty PNG and
# SVG plots of recorded runs (shard rebalancing; a pipeline whose layers
# migrated), a malformed line named by file and line and left out, and
# every bad input refused. Included after balance_tests.cmake and
# restage_tests.cmake, whose runs it reports on.
find_program(GNUPLOT gnuplot REQUIRED)
set(BL_REPORT ${PROJECT_BINARY_DIR}/tools/ballast-report)
set(bl_report_out ${BL_CLI_OUT}/report)

bl_cli_test(report_balance EXIT 0
    MATCH "bal_proportional.jsonl: 25 steps \\(0..24\\), 2 ranks$"
          "^throughput: median [0-9]+ samples/s"
          "^load balance: efficiency mean 0?\\.[0-9]+"
          "^plan changes: [1-9]" "^time lost waiting: " "^migrations: 0$"
          "report in .*/report_balance/ \\(summary.txt, compute.png compute.svg loss.png loss.svg shards.png shards.svg throughput.png throughput.svg\\)"
    COMMAND ${BL_REPORT} --out ${bl_report_out}_balance ${BL_CLI_OUT}/bal_proportional.jsonl
    REQUIRES bal_proportional SETUP report_balance)
bl_cli_test(report_balance_files EXIT 0 MATCH "^plots: 8 non-empty$"
    COMMAND sh -c "echo plots: $(find \"$0\" -size +0 -name '*.[ps][nv]g' | wc -l) non-empty"
            ${bl_report_out}_balance
    REQUIRES report_balance)
bl_cli_test(report_pipeline EXIT 0
    MATCH "2 ranks, 2 pipeline stages$" "^stage maps: first 0,1,5, last 0,3,5$"
          "^migrations: [1-9][0-9]*, [0-9]+ bytes"
          "^stage-map decisions: [0-9]+ \\(hold [0-9]+, repartition [1-9][0-9]*\\)"
          "stages.png stages.svg"
    COMMAND ${BL_REPORT} --out ${bl_report_out}_pipeline ${BL_CLI_OUT}/restage_policy.jsonl
    REQUIRES restage_policy)

# A line that is not JSON, and one that is not a step record: each named,
# left out, and the report still made from the other 25.
bl_cli_test(report_malformed EXIT 0
    MATCH "report_bad.jsonl line 4: not JSON. left out"
          "report_bad.jsonl line 7: not a step record \\(step, step_s, shards\\). left out"
          "25 steps \\(0..24\\), 2 ranks, 2 malformed line\\(s\\) left out"
    COMMAND sh -c "head -n 3 \"$0\" >\"$1\" && echo '{\"step\": 3, oops' >>\"$1\" && sed -n 4,5p \"$0\" >>\"$1\" && echo '{\"hello\":1}' >>\"$1\" && tail -n +6 \"$0\" >>\"$1\" && exec \"$2\" --out \"$1.d\" \"$1\""
            ${BL_CLI_OUT}/bal_proportional.jsonl ${BL_CLI_OUT}/report_bad.jsonl ${BL_REPORT}
    REQUIRES bal_proportional)
bl_cli_test(report_nothing_usable EXIT 1 MATCH "report_empty.jsonl has no usable step record"
    COMMAND sh -c "echo 'not json' >\"$0\" && exec \"$1\" \"$0\"" ${BL_CLI_OUT}/report_empty.jsonl
            ${BL_REPORT}
    REQUIRES cli_out)
bl_cli_test(report_missing_file EXIT 1 MATCH "/nonexistent.jsonl: cannot read it"
    COMMAND ${BL_REPORT} /nonexistent.jsonl)
bl_cli_test(report_no_file EXIT 2 MATCH "no telemetry file given"
    COMMAND ${BL_REPORT} --quiet)
bl_cli_test(report_two_files EXIT 2 MATCH "one telemetry file, not 'a.jsonl' and 'b.jsonl'"
    COMMAND ${BL_REPORT} a.jsonl b.jsonl)
bl_cli_test(report_bad_option EXIT 2 MATCH "unknown option '--pdf'"
    COMMAND ${BL_REPORT} --pdf x.jsonl)
bl_cli_test(report_help EXIT 0 MATCH "^usage: ballast-report"
    COMMAND ${BL_REPORT} --help)

# Progress on rank 0: with a policy it names the load balance and the
# latest decision; in a log (here a pipe, under mpirun) one line per report
# and no carriage return; run directly on a terminal (script(1) gives it
# one) the line is redrawn in place.
bl_cli_test(progress_policy EXIT 0
    MATCH "^step 25/25 epoch 1/1 loss [0-9.]+ samples/s [0-9]+ eta [0-9]+s balance [01]\\.[0-9][0-9] plan v[0-9]+ (hold|move|even|proportional|last|median3|ema0\\.5|slow|trend|ratio|sparse)$"
    COMMAND ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/good
            --layers 32,16 --batch 32 --steps 25 --progress 0 --policy bandit
            --rebalance-every 3 --emulate-slowdown 1:3
    REQUIRES cli_data_good)
bl_cli_test(progress_log_has_no_carriage_return EXIT 0 MATCH "^carriage returns: 0 lines: 25$"
    COMMAND sh -c "\"$@\" --progress 0 >\"$0\" && echo carriage returns: $(tr -dc '\\r' <\"$0\" | wc -c) lines: $(grep -c '^step ' \"$0\")"
            ${BL_CLI_OUT}/progress_log.txt ${BL_MPIRUN} 2 --oversubscribe ${BL_CLI_TRAIN}
            --data ${BL_CLI_DATA}/good --layers 32,16 --batch 32 --steps 25
    REQUIRES cli_data_good cli_out)
find_program(SCRIPT script)
if(SCRIPT)
    bl_cli_test(progress_terminal_redraws EXIT 0 MATCH "^carriage returns: [1-9][0-9]*$"
        COMMAND sh -c "${SCRIPT} -qec \"$0 --data $1 --layers 32,16 --batch 32 --steps 25 --progress 0\" /dev/null >\"$2\" && echo carriage returns: $(tr -dc '\\r' <\"$2\" | wc -c)"
                ${BL_CLI_TRAIN} ${BL_CLI_DATA}/good ${BL_CLI_OUT}/progress_tty.txt
        REQUIRES cli_data_good cli_out)
endif()
set_tests_properties(cli_progress_policy cli_progress_log_has_no_carriage_return PROPERTIES
    LABELS "cli;mpi")

# ballast-bench: a strong and a weak sweep over 1 and 2 ranks (tiny model,
# generated data) prints both tables and writes both plots; bad flags are
# refused naming the flag.
set(BL_BENCH ${PROJECT_BINARY_DIR}/tools/ballast-bench)
bl_cli_test(bench_scaling EXIT 0
    MATCH "^strong scaling \\(mpirun\\): --layers 32,16, batch 32, 12 steps"
          "^weak scaling \\(mpirun\\): --layers 32,16, batch 32 per rank"
          "^ +ranks +batch +samples/s +speed-up +efficiency$"
          "^ +1 +32 +[0-9]+ +1\\.000 +1\\.000$" "^ +2 +32 +[0-9]+ +[0-9.]+ +[0-9.]+$"
          "^ +2 +64 +[0-9]+ +[0-9.]+ +[0-9.]+$"
          "ballast-bench: table in .*/bench_scaling/scaling.txt"
    COMMAND ${BL_BENCH} --ranks 1,2 --mode both --layers 32,16 --batch 32 --steps 12
            --warmup 2 --data ${BL_CLI_DATA}/good --launcher-args --oversubscribe
            --out ${BL_CLI_OUT}/bench_scaling -- --threads 1
    REQUIRES cli_data_good cli_out SETUP bench_scaling)
bl_cli_test(bench_scaling_plots EXIT 0 MATCH "^plots: 4 non-empty$"
    COMMAND sh -c "echo plots: $(find \"$0\" -size +0 -name 'scaling-*.[ps][nv]g' | wc -l) non-empty"
            ${BL_CLI_OUT}/bench_scaling
    REQUIRES bench_scaling)
set(bl_bench_usage_cases
    "bench_bad_mode|--mode: 'fast' is not strong, weak or both|--mode|fast"
    "bench_not_ascending|--ranks: '2,1' is not ascending|--ranks|2,1"
    "bench_bad_ranks|--ranks: 'x' in '1,x' is not a positive integer|--ranks|1,x"
    "bench_bad_launcher|--launcher: 'slurm' is not mpirun or srun|--launcher|slurm"
    "bench_short_run|--steps 4 with --warmup 2 leaves fewer than 3 steps|--steps|4|--warmup|2"
    "bench_bad_batch|--batch: '0' is not a positive integer|--batch|0"
    "bench_unknown|unknown argument '--fast'|--fast")
foreach(case IN LISTS bl_bench_usage_cases)
    string(REPLACE "|" ";" fields "${case}")
    list(POP_FRONT fields name regex)
    bl_cli_test(${name} EXIT 2 MATCH "${regex}" COMMAND ${BL_BENCH} ${fields})
endforeach()
bl_cli_test(bench_no_train EXIT 1 MATCH "/nonexistent is not an executable ballast-train"
    COMMAND ${BL_BENCH} --train /nonexistent)
set_tests_properties(cli_bench_scaling PROPERTIES LABELS "cli;mpi")
