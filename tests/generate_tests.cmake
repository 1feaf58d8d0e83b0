# ballast-generate (bl_lm_generate) end to end, through ctest (label cli).
# Included from tests/CMakeLists.txt after cli/cli_tests.cmake, so
# BALLAST_TEST_ENV and bl_cli_test are set. make_gpt2 writes two tiny
# random models at test time (fixture cli_generate_models): byte-level
# (vocabulary 256) and one of 300 tokens.

set(BL_GEN $<TARGET_FILE:ballast-generate>)
set(BL_GEN_WORK ${CMAKE_CURRENT_BINARY_DIR}/cli/generate)
set(BL_GEN_MODEL ${BL_GEN_WORK}/bytes.bin)
set(BL_GEN_MODEL_300 ${BL_GEN_WORK}/vocab300.bin)

add_executable(make_gpt2 ${CMAKE_CURRENT_SOURCE_DIR}/cli/make_gpt2.c)
target_include_directories(make_gpt2 PRIVATE ${BALLAST_RUNTIME_PRIVATE_DIRS}
    ${PROJECT_SOURCE_DIR}/kernels)
target_link_libraries(make_gpt2 PRIVATE ballast)

add_test(NAME cli_generate_make_models
    COMMAND sh -c "rm -rf \"$1\" && mkdir -p \"$1\" && \"$2\" \"$1/bytes.bin\" && \"$2\" \"$1/vocab300.bin\" 300"
            sh ${BL_GEN_WORK} $<TARGET_FILE:make_gpt2>)
set_tests_properties(cli_generate_make_models PROPERTIES LABELS cli
    FIXTURES_SETUP cli_generate_models)

# One seed, one text: 22 bytes starting with the prompt; another seed,
# another text.
add_test(NAME cli_generate_same_seed
    COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cli/generate_twice.sh ${BL_GEN} ${BL_GEN_MODEL}
            ${BL_GEN_WORK}/twice)
set_tests_properties(cli_generate_same_seed PROPERTIES LABELS cli TIMEOUT 60
    ENVIRONMENT "${BALLAST_TEST_ENV}" FIXTURES_REQUIRED cli_generate_models
    PASS_REGULAR_EXPRESSION "generate_twice.sh: ok")

bl_cli_test(generate_raw EXIT 0 MATCH "^10( [0-9]+){5}$"
    COMMAND ${BL_GEN} --model ${BL_GEN_MODEL_300} --tokens 5 --raw
    REQUIRES cli_generate_models)
bl_cli_test(generate_help EXIT 0
    MATCH "^usage: ballast-generate" --model --prompt --tokens --temperature --seed --raw
    COMMAND ${BL_GEN} --help)
bl_cli_test(generate_missing_model EXIT 1
    MATCH "^ballast-generate: .*${BL_GEN_WORK}/no-such-model\\.bin"
    COMMAND ${BL_GEN} --model ${BL_GEN_WORK}/no-such-model.bin --prompt hi
    REQUIRES cli_generate_models)
bl_cli_test(generate_text_prompt_wrong_vocab EXIT 2
    MATCH "^ballast-generate: --prompt: .*vocabulary of 300 tokens"
    COMMAND ${BL_GEN} --model ${BL_GEN_MODEL_300} --prompt ab --raw
    REQUIRES cli_generate_models)
bl_cli_test(generate_bytes_wrong_vocab EXIT 2 MATCH "vocabulary of 300 tokens.*use --raw"
    COMMAND ${BL_GEN} --model ${BL_GEN_MODEL_300}
    REQUIRES cli_generate_models)

# Bad usage exits 2 naming the flag. name, expected regex, arguments.
set(bl_gen_usage_cases
    "unknown_flag|^ballast-generate: unknown option '--fast'|--model|m.bin|--fast"
    "no_model|^ballast-generate: --model: a model file is required|--tokens|5"
    "bad_tokens|^ballast-generate: --tokens: -1 is outside|--model|m.bin|--tokens|-1"
    "bad_tokens_text|^ballast-generate: --tokens: 'many' is not an integer|--model|m.bin|--tokens|many"
    "zero_temperature|^ballast-generate: --temperature: the temperature must be above 0|--model|m.bin|--temperature|0"
    "bad_temperature|^ballast-generate: --temperature: 'nan' is not a finite number|--model|m.bin|--temperature|nan"
    "bad_seed|^ballast-generate: --seed: 'x' is not an integer|--model|m.bin|--seed|x"
    "missing_value|^ballast-generate: --seed: needs a value|--model|m.bin|--seed")
foreach(case IN LISTS bl_gen_usage_cases)
    string(REPLACE "|" ";" fields "${case}")
    list(POP_FRONT fields name regex)
    bl_cli_test(generate_${name} EXIT 2 MATCH "${regex}" COMMAND ${BL_GEN} ${fields})
endforeach()
