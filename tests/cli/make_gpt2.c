/* make_gpt2 PATH [VOCAB]: writes a tiny GPT-2 model with GPT-2's
 * initialisation from seed 1 to PATH in llm.c's float32 format, for the
 * ballast-generate tests: maxT 16, V VOCAB (default 256, the byte-level
 * vocabulary), L 2, NH 2, C 16, Vp VOCAB rounded up to 128. Exits 0, or 1
 * with a message. */
#include <stdio.h>
#include <stdlib.h>

#include "gpt2.h"

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: make_gpt2 PATH [VOCAB]\n");
        return 2;
    }
    const int vocab = argc == 3 ? atoi(argv[2]) : 256;
    if (vocab < 1 || vocab > 65536) {
        fprintf(stderr, "make_gpt2: VOCAB %s is outside [1, 65536]\n", argv[2]);
        return 2;
    }
    const bl_gpt2_config_t cfg = {.max_seq_len = 16,
                                  .vocab_size = vocab,
                                  .num_layers = 2,
                                  .num_heads = 2,
                                  .channels = 16,
                                  .padded_vocab_size = (vocab + 127) / 128 * 128};
    bl_error_t err = {0};
    bl_gpt2_t *g = NULL;
    bl_status_t s = bl_gpt2_create(&cfg, &bl_cpu_kernels, NULL, NULL, &err, &g);
    if (s == BL_OK) {
        s = bl_gpt2_init_params(g, 1, &err);
    }
    if (s == BL_OK) {
        bl_gpt2_file_t file = {0};
        file.config = cfg;
        file.param_count = g->param_count;
        file.params = g->params; /* host memory: the model is on the CPU */
        s = bl_gpt2_write(argv[1], &file, &err);
    }
    bl_gpt2_destroy(g);
    if (s != BL_OK) {
        fprintf(stderr, "make_gpt2: %s\n", err.msg);
        return 1;
    }
    return 0;
}
