/* Tests of ballast-train's command line (tools/train_options.c):
 * defaults, every flag in both spellings (--flag value, --flag=value),
 * one test per kind of malformed value (each must fail with a one-line
 * message naming the flag), --help, and parsing more than once in a
 * process. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train_options.h"

#define MAX_ARGS 64

/* Parses the NULL-terminated argument list (without argv[0]) into *o.
 * Returns what train_options_parse returned; err holds its message. The
 * argument strings are not written (getopt only permutes the pointers). */
static int parse_list(train_options_t *o, char *err, size_t errlen, const char *const *args)
{
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = (char *)"ballast-train";
    for (; *args != NULL; args++) {
        assert_true(argc <= MAX_ARGS);
        argv[argc++] = (char *)*args;
    }
    argv[argc] = NULL;
    err[0] = '\0';
    return train_options_parse(argc, argv, o, err, errlen);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Parses args, which must succeed. */
static void parse_ok(train_options_t *o, const char *const *args)
{
    char err[512];
    if (parse_list(o, err, sizeof err, args) != 0) {
        fail_msg("parse failed: %s", err);
    }
}

/* Parses args, which must fail with a one-line message holding each of the
 * NULL-terminated phrases. */
static void parse_fails(const char *const *args, const char *const *phrases)
{
    train_options_t o;
    char err[512];
    int r = parse_list(&o, err, sizeof err, args);
    if (r != -1) {
        fail_msg("parse of \"%s ...\" returned %d, expected -1", args[0], r);
    }
    if (err[0] == '\0') {
        fail_msg("parse of \"%s ...\" failed without a message", args[0]);
    }
    if (strchr(err, '\n') != NULL) {
        fail_msg("message \"%s\" is not one line", err);
    }
    for (; *phrases != NULL; phrases++) {
        if (strstr(err, *phrases) == NULL) {
            fail_msg("message \"%s\" lacks \"%s\"", err, *phrases);
        }
    }
}

#define PHRASES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- Valid command lines -------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    train_options_t o;
    memset(&o, 0x5a, sizeof o);
    char err[512];
    const char *none[] = {NULL};
    assert_int_equal(parse_list(&o, err, sizeof err, none), 0);
    assert_string_equal(o.data_dir, "/usr/share/datasets/fashion-mnist");
    assert_int_equal(o.hidden_count, 2);
    assert_int_equal(o.hidden[0], 256);
    assert_int_equal(o.hidden[1], 128);
    assert_int_equal(o.batch, 128);
    assert_true(o.lr == 0.05f);
    assert_true(o.momentum == 0.9f);
    assert_true(o.weight_decay == 0.0f);
    assert_int_equal(o.epochs, 1);
    assert_int_equal(o.steps, -1);
    assert_true(o.seed == 1);
    assert_int_equal(o.shuffle, 1);
    assert_int_equal(o.threads, 0);
    assert_null(o.init_params);
    assert_null(o.save_params);
    assert_true(o.progress_seconds == 5.0);
    assert_int_equal(o.quiet, 0);
    assert_int_equal(o.help, 0);
}

static void test_every_flag(void **state)
{
    (void)state;
    train_options_t o;
    parse_ok(&o,
             ARGS("--data", "/tmp/somewhere", "--layers", "64,32,16", "--batch", "50", "--lr",
                  "0.125", "--momentum", "0.5", "--weight-decay", "0.0625", "--epochs", "7",
                  "--seed", "123456789012", "--shuffle", "off", "--threads", "3", "--init-params",
                  "in.bin", "--save-params", "out.bin", "--progress", "0.5", "--quiet"));
    assert_string_equal(o.data_dir, "/tmp/somewhere");
    assert_int_equal(o.hidden_count, 3);
    assert_int_equal(o.hidden[0], 64);
    assert_int_equal(o.hidden[1], 32);
    assert_int_equal(o.hidden[2], 16);
    assert_int_equal(o.batch, 50);
    assert_true(o.lr == 0.125f);
    assert_true(o.momentum == 0.5f);
    assert_true(o.weight_decay == 0.0625f);
    assert_int_equal(o.epochs, 7);
    assert_int_equal(o.steps, -1);
    assert_true(o.seed == 123456789012ULL);
    assert_int_equal(o.shuffle, 0);
    assert_int_equal(o.threads, 3);
    assert_string_equal(o.init_params, "in.bin");
    assert_string_equal(o.save_params, "out.bin");
    assert_true(o.progress_seconds == 0.5);
    assert_int_equal(o.quiet, 1);
    assert_int_equal(o.help, 0);
}

static void test_equals_form(void **state)
{
    (void)state;
    train_options_t o;
    parse_ok(&o, ARGS("--data=/d", "--layers=10", "--batch=7", "--lr=2", "--momentum=0",
                      "--weight-decay=1", "--steps=0", "--seed=0", "--shuffle=on", "--threads=1024",
                      "--init-params=a", "--save-params=b", "--progress=0"));
    assert_string_equal(o.data_dir, "/d");
    assert_int_equal(o.hidden_count, 1);
    assert_int_equal(o.hidden[0], 10);
    assert_int_equal(o.batch, 7);
    assert_true(o.lr == 2.0f);
    assert_true(o.momentum == 0.0f);
    assert_true(o.weight_decay == 1.0f);
    assert_int_equal(o.steps, 0);
    assert_int_equal(o.epochs, 1);
    assert_true(o.seed == 0);
    assert_int_equal(o.shuffle, 1);
    assert_int_equal(o.threads, 1024);
    assert_string_equal(o.init_params, "a");
    assert_string_equal(o.save_params, "b");
    assert_true(o.progress_seconds == 0.0);
}

static void test_steps_alone(void **state)
{
    (void)state;
    train_options_t o;
    parse_ok(&o, ARGS("--steps", "250"));
    assert_int_equal(o.steps, 250);
    assert_int_equal(o.epochs, 1);
}

static void test_last_value_wins(void **state)
{
    (void)state;
    train_options_t o;
    parse_ok(&o, ARGS("--batch", "5", "--layers", "1,2,3", "--batch", "6", "--layers", "9"));
    assert_int_equal(o.batch, 6);
    assert_int_equal(o.hidden_count, 1);
    assert_int_equal(o.hidden[0], 9);
}

static void test_layer_limits(void **state)
{
    (void)state;
    /* TRAIN_MAX_LAYERS widths of 1: the most allowed */
    char text[4 * TRAIN_MAX_LAYERS + 8];
    text[0] = '\0';
    for (int i = 0; i < TRAIN_MAX_LAYERS; i++) {
        strcat(text, i == 0 ? "1" : ",1");
    }
    train_options_t o;
    parse_ok(&o, ARGS("--layers", text));
    assert_int_equal(o.hidden_count, TRAIN_MAX_LAYERS);
    assert_int_equal(o.hidden[TRAIN_MAX_LAYERS - 1], 1);
    /* the widest width allowed */
    parse_ok(&o, ARGS("--layers", "1000000"));
    assert_int_equal(o.hidden[0], 1000000);
}

static void test_help(void **state)
{
    (void)state;
    train_options_t o;
    parse_ok(&o, ARGS("--help"));
    assert_int_equal(o.help, 1);
    parse_ok(&o, ARGS("--quiet"));
    assert_int_equal(o.help, 0);
    /* the usage text names every flag */
    const char *usage = train_options_usage();
    const char *flags[] = {"--data",    "--layers",   "--init-params", "--save-params",
                           "--batch",   "--lr",       "--momentum",    "--weight-decay",
                           "--epochs",  "--steps",    "--seed",        "--shuffle",
                           "--threads", "--progress", "--quiet",       "--help"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (strstr(usage, flags[i]) == NULL) {
            fail_msg("the usage text lacks %s", flags[i]);
        }
    }
}

static void test_parse_twice(void **state)
{
    (void)state;
    train_options_t o;
    parse_ok(&o, ARGS("--batch", "9", "--quiet", "--shuffle", "off"));
    assert_int_equal(o.batch, 9);
    /* a second parse starts again from argv[1] and from the defaults */
    parse_ok(&o, ARGS("--lr", "0.5"));
    assert_int_equal(o.batch, 128);
    assert_int_equal(o.quiet, 0);
    assert_int_equal(o.shuffle, 1);
    assert_true(o.lr == 0.5f);
    /* after a failure half way through, too */
    parse_fails(ARGS("--batch", "4", "--batch", "x", "--quiet"), PHRASES("--batch"));
    parse_ok(&o, ARGS("--batch", "4", "--quiet"));
    assert_int_equal(o.batch, 4);
    assert_int_equal(o.quiet, 1);
    /* and a failure at the end of the options */
    parse_fails(ARGS("--seed"), PHRASES("--seed"));
    parse_ok(&o, ARGS("--seed", "77"));
    assert_true(o.seed == 77);
    /* and a failure inside a cluster of short options, which leaves
     * getopt's position inside the old argv unless it is re-initialised */
    parse_fails(ARGS("-xy"), PHRASES("unknown option"));
    parse_ok(&o, ARGS("--batch", "5"));
    assert_int_equal(o.batch, 5);
    for (int i = 0; i < 100; i++) {
        parse_ok(&o, ARGS("--batch", "3"));
        assert_int_equal(o.batch, 3);
    }
}

/* ---- Malformed values, one kind per test ---------------------------------- */

static void test_bad_batch(void **state)
{
    (void)state;
    parse_fails(ARGS("--batch", "abc"), PHRASES("--batch", "'abc'", "not an integer"));
    parse_fails(ARGS("--batch", "12x"), PHRASES("--batch", "not an integer"));
    parse_fails(ARGS("--batch", "3.5"), PHRASES("--batch", "not an integer"));
    parse_fails(ARGS("--batch="), PHRASES("--batch", "not an integer"));
    parse_fails(ARGS("--batch", "0"), PHRASES("--batch", "0 is outside"));
    parse_fails(ARGS("--batch", "-4"), PHRASES("--batch", "-4 is outside"));
    parse_fails(ARGS("--batch", "99999999999999999999"), PHRASES("--batch", "not an integer"));
    parse_fails(ARGS("--batch=16777217"), PHRASES("--batch", "outside"));
}

static void test_bad_lr(void **state)
{
    (void)state;
    parse_fails(ARGS("--lr", "-0.1"), PHRASES("--lr", "outside"));
    parse_fails(ARGS("--lr", "0"), PHRASES("--lr", "must be positive"));
    parse_fails(ARGS("--lr", "0.0"), PHRASES("--lr", "must be positive"));
    parse_fails(ARGS("--lr", "nan"), PHRASES("--lr", "not a finite number"));
    parse_fails(ARGS("--lr", "NaN"), PHRASES("--lr", "not a finite number"));
    parse_fails(ARGS("--lr", "inf"), PHRASES("--lr", "not a finite number"));
    parse_fails(ARGS("--lr", "1e999"), PHRASES("--lr", "not a finite number"));
    parse_fails(ARGS("--lr", "fast"), PHRASES("--lr", "'fast'"));
    parse_fails(ARGS("--lr", ""), PHRASES("--lr", "not a finite number"));
    parse_fails(ARGS("--lr", "0.1abc"), PHRASES("--lr", "not a finite number"));
}

static void test_bad_momentum(void **state)
{
    (void)state;
    parse_fails(ARGS("--momentum", "1.0"), PHRASES("--momentum", "outside [0, 1)"));
    parse_fails(ARGS("--momentum", "1"), PHRASES("--momentum", "outside"));
    parse_fails(ARGS("--momentum", "-0.5"), PHRASES("--momentum", "outside"));
    parse_fails(ARGS("--momentum", "nan"), PHRASES("--momentum", "not a finite number"));
    /* just below 1 is fine */
    train_options_t o;
    parse_ok(&o, ARGS("--momentum", "0.999"));
    assert_true(o.momentum == 0.999f);
}

static void test_bad_weight_decay(void **state)
{
    (void)state;
    parse_fails(ARGS("--weight-decay", "-1e-3"), PHRASES("--weight-decay", "outside"));
    parse_fails(ARGS("--weight-decay", "1.5"), PHRASES("--weight-decay", "outside"));
    parse_fails(ARGS("--weight-decay", "NAN"), PHRASES("--weight-decay", "not a finite"));
}

static void test_bad_layers(void **state)
{
    (void)state;
    parse_fails(ARGS("--layers", ""), PHRASES("--layers", "empty"));
    parse_fails(ARGS("--layers="), PHRASES("--layers", "empty"));
    parse_fails(ARGS("--layers", "256,,128"), PHRASES("--layers", "'256,,128'"));
    parse_fails(ARGS("--layers", "256,"), PHRASES("--layers", "ends with a comma"));
    parse_fails(ARGS("--layers", ",256"), PHRASES("--layers", "',256'"));
    parse_fails(ARGS("--layers", "abc"), PHRASES("--layers", "'abc'"));
    parse_fails(ARGS("--layers", "256;128"), PHRASES("--layers", "'256;128'"));
    parse_fails(ARGS("--layers", "12.5"), PHRASES("--layers", "'12.5'"));
    parse_fails(ARGS("--layers", "0"), PHRASES("--layers", "width 0"));
    parse_fails(ARGS("--layers", "64,0,32"), PHRASES("--layers", "width 0"));
    parse_fails(ARGS("--layers", "-8"), PHRASES("--layers", "width -8"));
    parse_fails(ARGS("--layers", "1000001"), PHRASES("--layers", "width 1000001"));
    parse_fails(ARGS("--layers", "99999999999999999999"), PHRASES("--layers"));
    /* one more than TRAIN_MAX_LAYERS */
    char text[4 * TRAIN_MAX_LAYERS + 8];
    text[0] = '\0';
    for (int i = 0; i <= TRAIN_MAX_LAYERS; i++) {
        strcat(text, i == 0 ? "2" : ",2");
    }
    char limit[32];
    snprintf(limit, sizeof limit, "more than %d", TRAIN_MAX_LAYERS);
    parse_fails(ARGS("--layers", text), PHRASES("--layers", limit));
}

static void test_bad_shuffle(void **state)
{
    (void)state;
    parse_fails(ARGS("--shuffle", "maybe"), PHRASES("--shuffle", "'maybe'"));
    parse_fails(ARGS("--shuffle", "ON"), PHRASES("--shuffle", "'ON'"));
    parse_fails(ARGS("--shuffle", "1"), PHRASES("--shuffle"));
    parse_fails(ARGS("--shuffle="), PHRASES("--shuffle"));
}

static void test_bad_counts(void **state)
{
    (void)state;
    parse_fails(ARGS("--epochs", "0"), PHRASES("--epochs", "outside"));
    parse_fails(ARGS("--epochs", "two"), PHRASES("--epochs", "not an integer"));
    parse_fails(ARGS("--steps", "-1"), PHRASES("--steps", "outside"));
    parse_fails(ARGS("--steps", "1e3"), PHRASES("--steps", "not an integer"));
    parse_fails(ARGS("--seed", "-1"), PHRASES("--seed", "outside"));
    parse_fails(ARGS("--seed", "0x10"), PHRASES("--seed", "not an integer"));
    parse_fails(ARGS("--threads", "0"), PHRASES("--threads", "outside"));
    parse_fails(ARGS("--threads", "1025"), PHRASES("--threads", "outside"));
    parse_fails(ARGS("--progress", "-1"), PHRASES("--progress", "outside"));
    parse_fails(ARGS("--progress", "soon"), PHRASES("--progress", "not a finite number"));
}

static void test_epochs_with_steps(void **state)
{
    (void)state;
    parse_fails(ARGS("--epochs", "2", "--steps", "10"), PHRASES("--epochs", "--steps"));
    parse_fails(ARGS("--steps", "10", "--epochs", "2"), PHRASES("--epochs", "--steps"));
    /* --steps 0 counts as given */
    parse_fails(ARGS("--steps=0", "--epochs=1"), PHRASES("--epochs", "--steps"));
}

static void test_unknown_option(void **state)
{
    (void)state;
    parse_fails(ARGS("--bogus"), PHRASES("unknown option", "'--bogus'"));
    parse_fails(ARGS("--batch", "8", "--bogus=3"), PHRASES("unknown option", "--bogus"));
    /* a short option is unknown too (optopt holds its letter, not 0) */
    parse_fails(ARGS("-x"), PHRASES("unknown option", "'-x'"));
    /* a value given to a flag that takes none: named, and not said to lack one */
    train_options_t o;
    char err[512];
    assert_int_equal(parse_list(&o, err, sizeof err, ARGS("--quiet=1")), -1);
    assert_non_null(strstr(err, "--quiet"));
    assert_null(strstr(err, "needs a value"));
}

static void test_missing_value(void **state)
{
    (void)state;
    parse_fails(ARGS("--batch"), PHRASES("--batch", "needs a value"));
    parse_fails(ARGS("--quiet", "--data"), PHRASES("--data", "needs a value"));
    parse_fails(ARGS("--layers"), PHRASES("--layers", "needs a value"));
}

static void test_stray_argument(void **state)
{
    (void)state;
    parse_fails(ARGS("stray"), PHRASES("unexpected argument", "'stray'"));
    /* before, between and after options */
    parse_fails(ARGS("--batch", "8", "extra", "--quiet"), PHRASES("'extra'"));
    parse_fails(ARGS("--quiet", "last"), PHRASES("'last'"));
    /* everything after -- is positional, and refused */
    parse_fails(ARGS("--", "--batch"), PHRASES("unexpected argument", "'--batch'"));
}

/* ---- Pipelines and the grid ---------------------------------------------- */

static void test_pipeline_flags(void **state)
{
    (void)state;
    train_options_t o;
    parse_ok(&o, ARGS("--layers", "8,8"));
    assert_int_equal(o.pp, 1);
    assert_int_equal(o.dp, 0);
    assert_int_equal(o.micro_batches, 1);
    assert_int_equal(o.schedule, BL_SCHEDULE_1F1B);
    assert_int_equal(o.stage_count, 0);
    assert_int_equal(train_options_layer_count(&o), 5);

    parse_ok(&o, ARGS("--layers", "8,8", "--pp", "2", "--dp", "3", "--micro-batches", "7",
                      "--schedule", "gpipe"));
    assert_int_equal(o.pp, 2);
    assert_int_equal(o.dp, 3);
    assert_int_equal(o.micro_batches, 7);
    assert_int_equal(o.schedule, BL_SCHEDULE_GPIPE);

    /* A stage map alone sets the stage count. */
    parse_ok(&o, ARGS("--layers", "8,8", "--stages", "0-1,2-2,3-4"));
    assert_int_equal(o.pp, 3);
    assert_int_equal(o.stage_count, 3);
    assert_int_equal(o.stage_first[0], 0);
    assert_int_equal(o.stage_first[1], 2);
    assert_int_equal(o.stage_first[2], 3);
    parse_ok(&o, ARGS("--layers", "8,8", "--stages", "0-4", "--pp", "1"));
    assert_int_equal(o.pp, 1);
}

static void test_bad_pipeline_flags(void **state)
{
    (void)state;
    parse_fails(ARGS("--pp", "0"), PHRASES("--pp", "0 is outside"));
    parse_fails(ARGS("--dp", "0"), PHRASES("--dp", "0 is outside"));
    parse_fails(ARGS("--micro-batches", "32768"), PHRASES("--micro-batches", "outside"));
    parse_fails(ARGS("--schedule", "1F1B"), PHRASES("--schedule", "'1F1B' is neither"));
    parse_fails(ARGS("--layers", "8", "--pp", "4"),
                PHRASES("--pp 4", "3 layers", "every stage needs at least one"));
    parse_fails(ARGS("--layers", "8", "--stages", "1-2"),
                PHRASES("--stages", "stage 0 is layers 1-2", "start at layer 0"));
    parse_fails(ARGS("--layers", "8", "--stages", "0-1,1-2"),
                PHRASES("--stages", "stage 1 is layers 1-2", "start at layer 2"));
    parse_fails(ARGS("--layers", "8", "--stages", "0-1,2-1"),
                PHRASES("--stages", "stage 1 is layers 2-1"));
    parse_fails(ARGS("--layers", "8", "--stages", "0-1,2-5"),
                PHRASES("--stages", "cover layers 0-5", "layers 0-2"));
    parse_fails(ARGS("--layers", "8", "--stages", "0-1,"),
                PHRASES("--stages", "ends with a comma"));
    parse_fails(ARGS("--layers", "8", "--stages", ""), PHRASES("--stages", "empty"));
    parse_fails(ARGS("--layers", "8", "--stages", "0-1,2"), PHRASES("--stages", "not a list"));
    parse_fails(ARGS("--layers", "8", "--stages", "0--1"), PHRASES("--stages", "not a list"));
    /* found by fuzz_train_options: hi + 1 overflowed int */
    parse_fails(ARGS("--layers", "8", "--stages", "0-2147483647"),
                PHRASES("--stages", "not a list"));
    parse_fails(ARGS("--layers", "8", "--stages", "0-2147483646"),
                PHRASES("--stages", "cover layers 0-2147483646"));
    parse_fails(ARGS("--layers", "8", "--stages", "0-1,2-2", "--pp", "3"),
                PHRASES("--stages gives 2 stages but --pp is 3"));
}

/* --stages-at: scripted maps, packed as pp first layers each; the
 * repartition settings. */
static void test_stage_plan_flags(void **state)
{
    (void)state;
    train_options_t o;
    parse_ok(&o, ARGS("--layers", "8,8"));
    assert_int_equal(o.stage_plan_count, 0);
    assert_true(o.repartition_horizon == 200.0);
    assert_true(o.repartition_threshold == 0.02);
    parse_ok(&o, ARGS("--layers", "8,8", "--pp", "3", "--stages-at", "4:0-0,1-2,3-4", "--stages-at",
                      "9:0-2,3-3,4-4", "--repartition-horizon", "50", "--repartition-threshold",
                      "0.1"));
    assert_int_equal(o.stage_plan_count, 2);
    assert_int_equal(o.stage_plan_steps[0], 4);
    assert_int_equal(o.stage_plan_steps[1], 9);
    const int packed[] = {0, 1, 3, 0, 3, 4};
    assert_memory_equal(o.stage_plan_first, packed, sizeof packed);
    assert_true(o.repartition_horizon == 50.0);
    assert_true(o.repartition_threshold == 0.1);
}

static void test_bad_stage_plan_flags(void **state)
{
    (void)state;
    parse_fails(ARGS("--layers", "8", "--stages-at", "3:0-1,2-2"),
                PHRASES("--stages-at needs a pipeline"));
    parse_fails(ARGS("--layers", "8", "--pp", "2", "--stages-at", "3:0-0,1-1,2-2"),
                PHRASES("--stages-at 3", "3 stages", "the job has 2 stages"));
    parse_fails(ARGS("--layers", "8", "--pp", "2", "--stages-at", "3:0-0,1-1"),
                PHRASES("--stages-at 3", "covering layers 0-1", "over layers 0-2"));
    parse_fails(
        ARGS("--layers", "8", "--pp", "2", "--stages-at", "5:0-0,1-2", "--stages-at", "5:0-1,2-2"),
        PHRASES("--stages-at", "step 5 comes after step 5"));
    parse_fails(ARGS("--layers", "8", "--pp", "2", "--stages-at", "0-0,1-2"),
                PHRASES("--stages-at", "is not STEP:MAP"));
    parse_fails(ARGS("--layers", "8", "--pp", "2", "--stages-at", "-1:0-0,1-2"),
                PHRASES("--stages-at", "is not STEP:MAP"));
    parse_fails(ARGS("--layers", "8", "--pp", "2", "--stages-at", "2:1-2"),
                PHRASES("--stages-at", "must start at layer 0"));
    parse_fails(ARGS("--layers", "8", "--pp", "2", "--stages-at", "2:0-0,1-2147483647"),
                PHRASES("--stages-at", "not a list"));
    parse_fails(ARGS("--repartition-horizon", "0.5"), PHRASES("--repartition-horizon", "outside"));
    parse_fails(ARGS("--repartition-threshold", "1"),
                PHRASES("--repartition-threshold", "outside"));
    parse_fails(ARGS("--repartition-threshold", "x"),
                PHRASES("--repartition-threshold", "not a finite number"));
}

/* Shard caps: one per pipeline, min <= max, a given plan within them, and
 * room for the batch. */
static void test_shard_caps(void **state)
{
    (void)state;
    train_options_t o;
    char err[512];
    parse_ok(&o, ARGS("--batch", "32", "--shard-min", "4,0", "--shard-max", "20,32"));
    assert_int_equal(o.shard_min_count, 2);
    assert_int_equal(o.shard_max[0], 20);
    assert_int_equal(train_options_check_ranks(&o, 2, err, sizeof err), 0);
    assert_int_equal(train_options_check_ranks(&o, 3, err, sizeof err), -1);
    assert_non_null(strstr(err, "--shard-min: 2 sizes given but the job has 3 ranks"));
    parse_ok(&o, ARGS("--batch", "32", "--shard-max", "20,32", "--shards", "24,8"));
    assert_int_equal(train_options_check_ranks(&o, 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "--shards: 24 for rank 0 is outside its caps [0, 20]"));
    parse_ok(&o, ARGS("--batch", "32", "--shard-min", "9,0", "--shard-max", "8,32"));
    assert_int_equal(train_options_check_ranks(&o, 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "--shard-min 9 is above --shard-max 8 for rank 0"));
    parse_ok(&o, ARGS("--batch", "32", "--shard-max", "10,10"));
    assert_int_equal(train_options_check_ranks(&o, 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "--shard-min sums to 0 and --shard-max to 20: --batch 32"));
    parse_ok(&o, ARGS("--batch", "32", "--shard-min", "20,20"));
    assert_int_equal(train_options_check_ranks(&o, 2, err, sizeof err), -1);
    assert_non_null(strstr(err, "--shard-min sums to 40"));
    parse_ok(&o, ARGS("--batch", "32", "--pp", "2", "--shard-max", "20,32,5"));
    assert_int_equal(train_options_check_ranks(&o, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "--shard-max: 3 sizes given but the job has 2 pipelines"));
    parse_fails(ARGS("--shard-max", "-1"), PHRASES("--shard-max"));
    parse_fails(ARGS("--shard-min", "1,x"), PHRASES("--shard-min"));
}

/* What depends on the job's size: the grid and the per-pipeline shards. */
static void test_check_ranks(void **state)
{
    (void)state;
    train_options_t o;
    char err[512];
    parse_ok(&o, ARGS("--layers", "8,8", "--pp", "2", "--batch", "10"));
    assert_int_equal(train_options_check_ranks(&o, 4, err, sizeof err), 0);
    assert_int_equal(train_options_check_ranks(&o, 3, err, sizeof err), -1);
    assert_non_null(strstr(err, "--pp 2: the job's 3 ranks are not a whole number"));
    parse_ok(&o, ARGS("--layers", "8,8", "--pp", "2", "--dp", "2", "--batch", "10"));
    assert_int_equal(train_options_check_ranks(&o, 4, err, sizeof err), 0);
    assert_int_equal(train_options_check_ranks(&o, 6, err, sizeof err), -1);
    assert_non_null(strstr(err, "--dp 2 x --pp 2 is 4 ranks but the job has 6"));
    parse_ok(&o, ARGS("--layers", "8,8", "--pp", "2", "--shards", "7,3", "--batch", "10"));
    assert_int_equal(train_options_check_ranks(&o, 4, err, sizeof err), 0);
    assert_int_equal(train_options_check_ranks(&o, 6, err, sizeof err), -1);
    assert_non_null(strstr(err, "--shards: 2 sizes given but the job has 3 pipelines"));
    /* Slowdowns name ranks, not pipelines. */
    parse_ok(&o, ARGS("--layers", "8,8", "--pp", "2", "--emulate-slowdown", "3:2"));
    assert_int_equal(train_options_check_ranks(&o, 4, err, sizeof err), 0);
}

static void test_short_error_buffer(void **state)
{
    (void)state;
    train_options_t o;
    char err[16];
    memset(err, 'z', sizeof err);
    assert_int_equal(parse_list(&o, err, 8, ARGS("--layers", "256,,128")), -1);
    /* truncated inside the 8 bytes it was given, the rest untouched */
    assert_int_equal(strlen(err), 7);
    assert_int_equal(err[8], 'z');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_flag),
        cmocka_unit_test(test_equals_form),
        cmocka_unit_test(test_steps_alone),
        cmocka_unit_test(test_last_value_wins),
        cmocka_unit_test(test_layer_limits),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_parse_twice),
        cmocka_unit_test(test_bad_batch),
        cmocka_unit_test(test_bad_lr),
        cmocka_unit_test(test_bad_momentum),
        cmocka_unit_test(test_bad_weight_decay),
        cmocka_unit_test(test_bad_layers),
        cmocka_unit_test(test_bad_shuffle),
        cmocka_unit_test(test_bad_counts),
        cmocka_unit_test(test_epochs_with_steps),
        cmocka_unit_test(test_unknown_option),
        cmocka_unit_test(test_missing_value),
        cmocka_unit_test(test_stray_argument),
        cmocka_unit_test(test_pipeline_flags),
        cmocka_unit_test(test_bad_pipeline_flags),
        cmocka_unit_test(test_stage_plan_flags),
        cmocka_unit_test(test_shard_caps),
        cmocka_unit_test(test_bad_stage_plan_flags),
        cmocka_unit_test(test_check_ranks),
        cmocka_unit_test(test_short_error_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
