# ballast-train end to end, through ctest (label cli). Included from
# tests/CMakeLists.txt, so BALLAST_TEST_ENV is set.
#
# The data is synthetic and generated at test time into the build tree by
# make_idx (fixtures cli_data_*): a linearly separable 4-class problem of
# 8×8 images, 2000 training and 400 test samples, plus one directory per
# kind of broken file. Parameter files go to a directory that a setup test
# empties first (fixture cli_out), so no check can pass on a file left by an
# earlier run.
#
# Each test runs ballast-train through expect.sh (exit code and regexes on
# stdout+stderr) or compares parameter files with same_bytes.sh.

set(BL_CLI_DIR ${CMAKE_CURRENT_LIST_DIR})
set(BL_CLI_WORK ${CMAKE_CURRENT_BINARY_DIR}/cli)
set(BL_CLI_DATA ${BL_CLI_WORK}/data)
set(BL_CLI_OUT ${BL_CLI_WORK}/out)
set(BL_CLI_TRAIN $<TARGET_FILE:ballast-train>)

add_executable(make_idx ${BL_CLI_DIR}/make_idx.c)
target_link_libraries(make_idx PRIVATE ZLIB::ZLIB)

# bl_cli_test(NAME [EXIT CODE] [MATCH REGEX...] [COMMAND ARG...]
#             [COMPARE same|differ FILE FILE] [REQUIRES FIXTURE...] [SETUP FIXTURE...])
# Adds test cli_NAME. With COMMAND: runs it through expect.sh, which wants
# exit code CODE and every MATCH regex (a leading '!': no line may match).
# With COMPARE: same_bytes.sh on the two files.
function(bl_cli_test name)
    cmake_parse_arguments(T "" "EXIT" "MATCH;COMMAND;COMPARE;REQUIRES;SETUP" ${ARGN})
    if(T_COMPARE)
        set(cmd sh ${BL_CLI_DIR}/same_bytes.sh ${T_COMPARE})
    else()
        set(cmd sh ${BL_CLI_DIR}/expect.sh ${T_EXIT} ${T_MATCH} -- ${T_COMMAND})
    endif()
    add_test(NAME cli_${name} COMMAND ${cmd})
    set_tests_properties(cli_${name} PROPERTIES LABELS cli ENVIRONMENT "${BALLAST_TEST_ENV}"
        TIMEOUT 60)
    if(T_REQUIRES)
        set_tests_properties(cli_${name} PROPERTIES FIXTURES_REQUIRED "${T_REQUIRES}")
    endif()
    if(T_SETUP)
        set_tests_properties(cli_${name} PROPERTIES FIXTURES_SETUP "${T_SETUP}")
    endif()
endfunction()

# ---- Fixtures: data sets and an empty output directory ----------------------

add_test(NAME cli_make_data_good COMMAND make_idx ${BL_CLI_DATA}/good)
add_test(NAME cli_make_data_raw COMMAND make_idx ${BL_CLI_DATA}/raw --raw)
set_tests_properties(cli_make_data_good PROPERTIES LABELS cli FIXTURES_SETUP cli_data_good)
set_tests_properties(cli_make_data_raw PROPERTIES LABELS cli FIXTURES_SETUP cli_data_raw)
add_test(NAME cli_clean_out COMMAND sh -c "rm -rf \"$1\" && mkdir -p \"$1\"" sh ${BL_CLI_OUT})
set_tests_properties(cli_clean_out PROPERTIES LABELS cli FIXTURES_SETUP cli_out)
# make_idx needs the parent of each data directory
file(MAKE_DIRECTORY ${BL_CLI_DATA})

# ---- Usage: --help, and bad flags exit 2 naming the flag ---------------------

bl_cli_test(help EXIT 0
    MATCH "^usage: ballast-train" --data --layers --classes --init-params --save-params --batch
          --lr --momentum --weight-decay --epochs --steps --seed --shuffle --threads
          --progress --quiet --help --eval-every --shards --bucket-mb --policy
          --rebalance-every --policy-file --emulate-slowdown --telemetry --trace
          --pp --dp --micro-batches --schedule --stages
          "!^summary: steps=[0-9]"
    COMMAND ${BL_CLI_TRAIN} --help)

# name, expected regex, arguments
set(bl_cli_usage_cases
    "bad_batch|^ballast-train: --batch: 0 is outside|--batch|0"
    "bad_batch_text|--batch: 'many' is not an integer|--batch|many"
    "bad_lr|--lr: .*not a finite number|--lr|nan"
    "zero_lr|--lr: the learning rate must be positive|--lr|0"
    "bad_momentum|--momentum: 1 is outside|--momentum|1.0"
    "bad_classes|--classes: 0 is outside \\[1, 256\\]|--classes|0"
    "bad_classes_many|--classes: 257 is outside \\[1, 256\\]|--classes|257"
    "bad_layers|--layers: '256,,128'|--layers|256,,128"
    "bad_layers_comma|--layers: '256,' ends with a comma|--layers|256,"
    "bad_shuffle|--shuffle: 'maybe' is neither on nor off|--shuffle|maybe"
    "epochs_and_steps|--epochs and --steps|--epochs|2|--steps|3"
    "unknown_option|unknown option '--bogus'|--bogus"
    "missing_value|--data: needs a value|--quiet|--data"
    "stray_argument|unexpected argument 'params.bin'|--quiet|params.bin")
foreach(case IN LISTS bl_cli_usage_cases)
    string(REPLACE "|" ";" parts "${case}")
    list(POP_FRONT parts name regex)
    bl_cli_test(usage_${name} EXIT 2 MATCH "${regex}" "!^summary: steps=[0-9]" "!^usage:"
        COMMAND ${BL_CLI_TRAIN} ${parts})
endforeach()

# ---- Broken data: exit 1 naming the file and the fault -----------------------

bl_cli_test(missing_data_dir EXIT 1
    MATCH [[no-such-dir/train-images-idx3-ubyte: cannot open: No such file]] "!^summary: steps=[0-9]"
    COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_WORK}/no-such-dir --quiet)

# kind, regex (the file, then the fault)
set(bl_cli_broken_cases
    [[truncate|train-images-idx3-ubyte\.gz: gzip stream is truncated]]
    [[short-data|train-images-idx3-ubyte\.gz: header declares 128000 data bytes \(2000 × 8 × 8\) but the file holds only 127936]]
    [[labels-mismatch|train-labels-idx1-ubyte\.gz: 1999 labels but .*train-images-idx3-ubyte\.gz has 2000 images]]
    [[bad-dtype|train-labels-idx1-ubyte\.gz: dtype 0x0b is not unsigned byte]]
    [[empty|train-labels-idx1-ubyte\.gz: file is empty]]
    [[bad-magic|t10k-images-idx3-ubyte\.gz: magic bytes 0x00 0x03 are not an IDX header]]
    [[trailing|t10k-labels-idx1-ubyte\.gz: 3 bytes after the declared data]]
    [[test-label|t10k-labels-idx1-ubyte\.gz: label 9 of sample 0 is not below the 4 classes]]
    [[missing|t10k-labels-idx1-ubyte: cannot open: No such file]]
    # refused before training, naming the test images
    [[test-features|t10k-images-idx3-ubyte\.gz: 49 features per sample, but the training images have 64]])
foreach(case IN LISTS bl_cli_broken_cases)
    string(REPLACE "|" ";" parts "${case}")
    list(GET parts 0 kind)
    list(GET parts 1 regex)
    add_test(NAME cli_make_data_${kind}
        COMMAND make_idx ${BL_CLI_DATA}/${kind} --corrupt ${kind})
    set_tests_properties(cli_make_data_${kind} PROPERTIES LABELS cli
        FIXTURES_SETUP cli_data_${kind})
    bl_cli_test(broken_${kind} EXIT 1 MATCH "${regex}" "!^summary: steps=[0-9]"
        COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/${kind} --layers 8 --steps 2 --quiet
        REQUIRES cli_data_${kind})
endforeach()

# ---- Labels: --classes catches a label beyond the classes; inferred classes
# warn about classes that have no sample --------------------------------------

foreach(kind train-label empty-class)
    add_test(NAME cli_make_data_${kind} COMMAND make_idx ${BL_CLI_DATA}/${kind} --corrupt ${kind})
    set_tests_properties(cli_make_data_${kind} PROPERTIES LABELS cli
        FIXTURES_SETUP cli_data_${kind})
endforeach()
bl_cli_test(classes_label_beyond EXIT 1
    MATCH [[train-labels-idx1-ubyte\.gz: label 200 of sample 5 is not below the 4 classes]]
          "!^summary: steps=[0-9]"
    COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/train-label --classes 4 --layers 8 --steps 2
            --quiet
    REQUIRES cli_data_train-label)
bl_cli_test(classes_inferred_stray_label EXIT 0
    MATCH [[warn: .*train-labels-idx1-ubyte\.gz: the largest label is 200, so there are 201 classes, but 196 of them have no sample \(4-199\)]]
          "^summary: steps=2 "
    COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/train-label --layers 8 --steps 2 --quiet
    REQUIRES cli_data_train-label)
bl_cli_test(classes_inferred_empty_class EXIT 0
    MATCH [[warn: .*train-labels-idx1-ubyte\.gz: the largest label is 3, so there are 4 classes, but 1 of them has no sample \(2\)]]
          "^summary: steps=2 "
    COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/empty-class --layers 8 --steps 2 --quiet
    REQUIRES cli_data_empty-class)
bl_cli_test(classes_given_no_warning EXIT 0
    MATCH "!warn: .*no sample" "^summary: steps=2 "
    COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/empty-class --classes 4 --layers 8 --steps 2
            --quiet
    REQUIRES cli_data_empty-class)

bl_cli_test(batch_larger_than_data EXIT 1
    MATCH "batch size 5000 is larger than the dataset's 2000 samples" "!^summary: steps=[0-9]"
    COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/good --layers 8 --batch 5000
    REQUIRES cli_data_good)

# ---- Training ----------------------------------------------------------------

# 2000 samples / batch 32 = 62 steps per epoch; 3 epochs = 186 steps.
set(bl_cli_run --data ${BL_CLI_DATA}/good --layers 32 --batch 32 --epochs 3 --lr 0.05)
set(bl_cli_trained [[^summary: steps=186 .*test_accuracy=(0\.99|1\.0)]])

bl_cli_test(train EXIT 0
    MATCH ${bl_cli_trained} "^step 186/186 epoch 3/3 loss [0-9.]+ samples/s"
    COMMAND ${BL_CLI_TRAIN} ${bl_cli_run} --progress 0 --save-params ${BL_CLI_OUT}/a.bin
    REQUIRES cli_data_good cli_out SETUP cli_params_a)

# Determinism: the same run again gives the same bytes.
bl_cli_test(train_again EXIT 0 MATCH ${bl_cli_trained} "!^step "
    COMMAND ${BL_CLI_TRAIN} ${bl_cli_run} --quiet --save-params ${BL_CLI_OUT}/a2.bin
    REQUIRES cli_data_good cli_out SETUP cli_params_a2)
bl_cli_test(deterministic COMPARE same ${BL_CLI_OUT}/a.bin ${BL_CLI_OUT}/a2.bin
    REQUIRES cli_params_a cli_params_a2)

# Reload: the trained parameters, loaded and saved after 0 steps, are the
# same bytes, and evaluate as trained (a fresh init scores about 0.25).
bl_cli_test(reload EXIT 0 MATCH [[^summary: steps=0 .*test_accuracy=(0\.99|1\.0)]]
    COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/good --layers 32 --quiet --steps 0
        --init-params ${BL_CLI_OUT}/a.bin --save-params ${BL_CLI_OUT}/reloaded.bin
    REQUIRES cli_data_good cli_params_a SETUP cli_params_reloaded)
bl_cli_test(reload_identical COMPARE same ${BL_CLI_OUT}/a.bin ${BL_CLI_OUT}/reloaded.bin
    REQUIRES cli_params_a cli_params_reloaded)

# A parameter file of another model: 64·32 + 32 + 32·4 + 4 = 2212 floats
# (8848 bytes) into 64·16 + 16 + 16·4 + 4 = 1108 floats (4432 bytes).
bl_cli_test(init_params_wrong_length EXIT 1
    MATCH [[a\.bin: holds 8848 bytes, but the model has 1108 parameters \(4432 bytes]]
          "!^summary: steps=[0-9]"
    COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/good --layers 16 --steps 1 --quiet
        --init-params ${BL_CLI_OUT}/a.bin
    REQUIRES cli_data_good cli_params_a)
bl_cli_test(init_params_missing EXIT 1
    MATCH [[no-such-params\.bin: cannot open: No such file]] "!^summary: steps=[0-9]"
    COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/good --layers 16 --steps 1 --quiet
        --init-params ${BL_CLI_OUT}/no-such-params.bin
    REQUIRES cli_data_good cli_out)
bl_cli_test(save_params_bad_dir EXIT 1
    MATCH [[no-such-dir/p\.bin]] "!^summary: steps=[0-9]"
    COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/good --layers 8 --steps 1 --quiet
        --save-params ${BL_CLI_OUT}/no-such-dir/p.bin
    REQUIRES cli_data_good cli_out)

# --shuffle off trains as well (the file order mixes the classes) and takes
# another path through the data than the seeded shuffle.
bl_cli_test(shuffle_off EXIT 0 MATCH ${bl_cli_trained}
    COMMAND ${BL_CLI_TRAIN} ${bl_cli_run} --quiet --shuffle off
        --save-params ${BL_CLI_OUT}/unshuffled.bin
    REQUIRES cli_data_good cli_out SETUP cli_params_unshuffled)
bl_cli_test(shuffle_off_differs COMPARE differ ${BL_CLI_OUT}/a.bin
    ${BL_CLI_OUT}/unshuffled.bin
    REQUIRES cli_params_a cli_params_unshuffled)

# Another seed, other parameters.
bl_cli_test(seed_2 EXIT 0 MATCH ${bl_cli_trained}
    COMMAND ${BL_CLI_TRAIN} ${bl_cli_run} --quiet --seed 2 --save-params ${BL_CLI_OUT}/seed2.bin
    REQUIRES cli_data_good cli_out SETUP cli_params_seed2)
bl_cli_test(seed_differs COMPARE differ ${BL_CLI_OUT}/a.bin ${BL_CLI_OUT}/seed2.bin
    REQUIRES cli_params_a cli_params_seed2)

# Uncompressed IDX files hold the same data: the same run, the same bytes.
bl_cli_test(raw_data EXIT 0 MATCH ${bl_cli_trained}
    COMMAND ${BL_CLI_TRAIN} --data ${BL_CLI_DATA}/raw --layers 32 --batch 32 --epochs 3
        --lr 0.05 --quiet --save-params ${BL_CLI_OUT}/raw.bin
    REQUIRES cli_data_raw cli_out SETUP cli_params_raw)
bl_cli_test(raw_same_as_gz COMPARE same ${BL_CLI_OUT}/a.bin ${BL_CLI_OUT}/raw.bin
    REQUIRES cli_params_a cli_params_raw)
