/*
 * libFuzzer target for src/quota_usage_trim.c: any bytes as the stream
 * of a Chat Completions request the gate asked for its usage.
 *
 * Beyond "no crash, no undefined behaviour" under ASan and UBSan, it
 * checks what the filter relies on: an event never grows, and what
 * leaves does not depend on how the stream was split into buffers (the
 * first byte seeds the pieces' lengths), against the stream in one.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quota_usage_trim.h"


static size_t
quota_fuzz_event(uint8_t *hold, size_t held, uint8_t *out, size_t *outlen)
{
    size_t  kept;

    kept = quota_usage_trim_event(hold, held);

    if (kept > held) {
        abort();
    }

    memcpy(out + *outlen, hold, kept);
    *outlen += kept;

    return kept;
}


/* what leaves when data comes in pieces; seed 0: all in one */
static size_t
quota_fuzz_trim(const uint8_t *data, size_t size, unsigned seed,
    uint8_t *hold, uint8_t *out)
{
    size_t             at, piece, n, held, outlen, k;
    unsigned           dropped;
    quota_sse_split_t  s;

    quota_sse_split_init(&s);
    held = outlen = 0;
    dropped = 0;

    for (at = 0; at < size; at += piece) {
        seed = seed ? seed * 1103515245u + 12345u : 0;
        piece = seed ? 1 + (seed >> 16) % 64 : size;
        piece = piece < size - at ? piece : size - at;
        k = 0;

        if (quota_sse_split_owed(&s, data + at, piece)) {
            /* the \n of the \r that ended the last event: its fate */
            if (!dropped) {
                out[outlen++] = data[at];
            }

            k = 1;
        }

        while (k < piece) {
            n = quota_sse_split(&s, data + at + k, piece - k);

            if (n == 0) {
                memcpy(hold + held, data + at + k, piece - k);
                held += piece - k;
                break;
            }

            memcpy(hold + held, data + at + k, n);
            dropped = quota_fuzz_event(hold, held + n, out, &outlen) == 0;
            held = 0;
            k += n;
        }
    }

    /* the stream ends: so does its last event */

    if (held) {
        (void) quota_fuzz_event(hold, held, out, &outlen);
    }

    return outlen;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t    whole, pieces;
    uint8_t  *hold, *one, *many;

    hold = malloc(size + 1);
    one = malloc(size + 1);
    many = malloc(size + 1);

    if (hold == NULL || one == NULL || many == NULL) {
        abort();
    }

    whole = quota_fuzz_trim(data, size, 0, hold, one);
    pieces = quota_fuzz_trim(data, size, size ? 1u + data[0] : 1u, hold,
                             many);

    if (whole > size || pieces != whole || memcmp(one, many, whole) != 0) {
        abort();
    }

    free(hold);
    free(one);
    free(many);

    return 0;
}
