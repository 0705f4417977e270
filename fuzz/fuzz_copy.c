/*
 * libFuzzer target for src/quota_copy.c.  The input is a ledger row as a
 * spool file may hold it, damaged or not, copied to the end of a heap
 * buffer of its own size so that reading past it is an ASan error; the
 * line goes to a heap buffer of exactly quota_copy_max(len) bytes, so
 * writing past the bound is one too.  A line is one line: it ends with
 * the only newline it holds, and holds no NUL (COPY's text would end
 * there) and no tab inside a value beyond the columns' separators.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quota_copy.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          n, i, tabs;
    unsigned char  *in, *out;

    in = malloc(size ? size : 1);
    out = malloc(quota_copy_max(size));

    if (in == NULL || out == NULL) {
        abort();
    }

    memcpy(in, data, size);

    n = quota_copy_row(out, in, size);

    if (n > quota_copy_max(size)) {
        abort();
    }

    if (n) {
        if (out[n - 1] != '\n') {
            abort();
        }

        for (i = 0, tabs = 0; i < n - 1; i++) {
            if (out[i] == '\n' || out[i] == '\0' || out[i] == '\r') {
                abort();
            }

            tabs += out[i] == '\t';
        }

        if (tabs != QUOTA_COPY_COLUMNS - 1) {
            abort();
        }
    }

    free(out);
    free(in);

    return 0;
}
