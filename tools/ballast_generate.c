/* ballast-generate: samples text from a GPT-2 model file in llm.c's float32
 * format (what ballast-train's language-model mode saves) with
 * bl_lm_generate, and prints it. The vocabulary is byte-level: the prompt's
 * bytes are its tokens, and the tokens are printed back as bytes; --raw
 * prints token ids instead, for models of other vocabularies. It uses the
 * public API only (ballast.h) and runs on one process: under mpirun, rank 0
 * generates and prints and the other ranks wait. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "ballast.h"
#include "flags.h"

#define PROG       "ballast-generate"
#define BYTE_VOCAB 256
#define MAX_TOKENS 1000000 /* --tokens' bound, and the prompt's */

static const char usage_text[] =
    "usage: " PROG " --model FILE [options]\n"
    "Samples text from a GPT-2 model in llm.c's float32 format and prints it, the prompt\n"
    "first. Tokens are bytes (a vocabulary of 256); --raw prints token ids instead.\n"
    "\n"
    "  --model FILE          the model (required)\n"
    "  --prompt TEXT         the prompt, whose bytes are its tokens (default a newline)\n"
    "  --tokens N            the tokens to sample after the prompt (default 200)\n"
    "  --temperature X       divides the logits before the softmax; > 0 (default 1.0)\n"
    "  --seed N              the sampler's seed; one seed gives one text (default 1)\n"
    "  --raw                 print the token ids, space separated, not bytes\n"
    "  --help                print this and exit\n"
    "\n"
    "Exit status: 0 success, 1 a run-time failure (the message says why), 2 bad usage.\n";

typedef struct options {
    const char *model;
    const char *prompt; /* NULL: the default, a newline */
    int tokens;
    double temperature;
    uint64_t seed;
    int raw;
    int help;
} options_t;

enum { OPT_MODEL = 256, OPT_PROMPT, OPT_TOKENS, OPT_TEMPERATURE, OPT_SEED, OPT_RAW, OPT_HELP };

static const struct option options[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"prompt", required_argument, NULL, OPT_PROMPT},
    {"tokens", required_argument, NULL, OPT_TOKENS},
    {"temperature", required_argument, NULL, OPT_TEMPERATURE},
    {"seed", required_argument, NULL, OPT_SEED},
    {"raw", no_argument, NULL, OPT_RAW},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Parses argv into o; 0, or -1 with a one-line message in err. */
static int parse(int argc, char **argv, options_t *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->tokens = 200;
    o->temperature = 1.0;
    o->seed = 1;
    char flag[64];
    long integer = 0;
    flags_begin();
    for (;;) {
        int opt = flags_next(argc, argv, options, OPT_MODEL, flag, sizeof flag, err, errlen);
        if (opt == -1) {
            break;
        }
        if (opt == -2) {
            return -1;
        }
        switch (opt) {
        case OPT_MODEL:
            o->model = optarg;
            break;
        case OPT_PROMPT:
            if (optarg[0] == '\0') {
                return flags_fail(err, errlen, "%s: the prompt must not be empty", flag);
            }
            if (strlen(optarg) > MAX_TOKENS) {
                return flags_fail(err, errlen, "%s: the prompt is longer than %d bytes", flag,
                                  MAX_TOKENS);
            }
            o->prompt = optarg;
            break;
        case OPT_TOKENS:
            if (flags_int(flag, optarg, 0, MAX_TOKENS, &o->tokens, err, errlen) != 0) {
                return -1;
            }
            break;
        case OPT_TEMPERATURE:
            if (flags_double(flag, optarg, 0.0, 1e6, 0, &o->temperature, err, errlen) != 0) {
                return -1;
            }
            if (!((float)o->temperature > 0.0f)) {
                return flags_fail(err, errlen, "%s: the temperature must be above 0", flag);
            }
            break;
        case OPT_SEED:
            if (flags_long(flag, optarg, 0, LONG_MAX, &integer, err, errlen) != 0) {
                return -1;
            }
            o->seed = (uint64_t)integer;
            break;
        case OPT_RAW:
            o->raw = 1;
            break;
        default: /* OPT_HELP */
            o->help = 1;
            break;
        }
    }
    if (!o->help && o->model == NULL) {
        return flags_fail(err, errlen, "--model: a model file is required (see --help)");
    }
    return 0;
}

/* The vocabulary size V of an llm.c GPT-2 file: word 3 of its header of
 * little-endian int32 words (magic 20240326, version, maxT, V, ...), or -1
 * when the file cannot be read as one; bl_lm_generate then says why. */
static long model_vocab(const char *path)
{
    unsigned char b[16];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    const size_t got = fread(b, 1, sizeof b, f);
    fclose(f);
    if (got != sizeof b) {
        return -1;
    }
    uint32_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
               (uint32_t)b[4 * i + 3] << 24;
    }
    return w[0] == 20240326u ? (long)w[3] : -1;
}

/* Generates as o says and prints the tokens; 0, 1 (a run-time failure) or
 * 2 (options that do not fit the model), with the message printed. */
static int generate(bl_runtime_t *rt, const options_t *o)
{
    const long vocab = model_vocab(o->model);
    if (vocab >= 0 && vocab != BYTE_VOCAB) {
        if (o->prompt != NULL) {
            fprintf(stderr,
                    PROG ": --prompt: %s has a vocabulary of %ld tokens, not the %d bytes "
                         "that a text prompt needs\n",
                    o->model, vocab, BYTE_VOCAB);
            return 2;
        }
        if (!o->raw) {
            fprintf(stderr,
                    PROG ": %s has a vocabulary of %ld tokens, not %d bytes: use --raw to "
                         "print token ids\n",
                    o->model, vocab, BYTE_VOCAB);
            return 2;
        }
    }
    const char *text = o->prompt != NULL ? o->prompt : "\n";
    const int prompt_count = (int)strlen(text);
    const int count = prompt_count + o->tokens;
    uint16_t *tokens = malloc((size_t)count * sizeof *tokens);
    if (tokens == NULL) {
        fprintf(stderr, PROG ": out of memory for %d tokens\n", count);
        return 1;
    }
    for (int i = 0; i < prompt_count; i++) {
        tokens[i] = (unsigned char)text[i];
    }
    bl_status_t st = bl_lm_generate(rt, o->model, tokens, prompt_count, o->tokens,
                                    (float)o->temperature, o->seed, tokens);
    if (st != BL_OK) {
        fprintf(stderr, PROG ": %s\n", bl_last_error(rt));
        free(tokens);
        return 1;
    }
    for (int i = 0; i < count; i++) {
        if (o->raw) {
            printf(i + 1 < count ? "%u " : "%u\n", (unsigned)tokens[i]);
        } else {
            putchar(tokens[i] < BYTE_VOCAB ? tokens[i] : '?');
        }
    }
    free(tokens);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, PROG ": cannot write the text to stdout\n");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);

    options_t o;
    char err[512];
    if (parse(argc, argv, &o, err, sizeof err) != 0) {
        if (rank == 0) {
            fprintf(stderr, PROG ": %s\n", err);
        }
        MPI_Finalize();
        return 2;
    }
    if (o.help) {
        if (rank == 0) {
            fputs(usage_text, stdout);
        }
        MPI_Finalize();
        return 0;
    }
    bl_config_t cfg = BL_CONFIG_INIT;
    if (getenv("BALLAST_LOG") == NULL) {
        cfg.log_level = BL_LOG_WARN; /* no banner of ranks and cores around the text */
    }
    bl_runtime_t *rt = NULL;
    int code = 0;
    if (bl_runtime_create(MPI_COMM_WORLD, &cfg, &rt) != BL_OK) {
        if (rank == 0) {
            fprintf(stderr, PROG ": the runtime could not be created (see above)\n");
        }
        code = 1;
    } else if (rank == 0) {
        code = generate(rt, &o);
    }
    bl_runtime_destroy(rt);
    MPI_Finalize();
    return code;
}
