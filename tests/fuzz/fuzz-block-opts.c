/*
 * tests/fuzz/fuzz-block-opts.c — libFuzzer target for the block layer's
 * option strings: bdrv_open_opts_parse must accept or refuse any input
 * with a message exactly when it fails, never crash or leak; parsed
 * options must copy and free cleanly. Nothing is opened.
 */
#include "block/block-int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *str = malloc(size + 1);
    if (!str) {
        return 0;
    }
    memcpy(str, data, size);
    str[size] = 0;
    struct bdrv_open_opts o, copy;
    struct error *err = NULL;
    int ret = bdrv_open_opts_parse(str, &o, &err);
    if (ret < 0) {
        if (!err) {
            abort();    /* failed without a message */
        }
        error_free(err);
    } else {
        if (err) {
            abort();    /* a message although it succeeded */
        }
        if (bdrv_open_opts_copy(&copy, &o) == 0) {
            bdrv_open_opts_free(&copy);
        }
        bdrv_open_opts_free(&o);
    }
    free(str);
    return 0;
}
