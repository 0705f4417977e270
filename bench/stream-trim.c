/*
 * bench/stream-trim: what taking out of a Chat Completions stream what
 * `quota_stream_usage on` added costs per event, in instructions (run
 * under callgrind by bench/stream-trim.sh) and, roughly, in nanoseconds.
 * The stream is OpenAI's shape: content chunks with "usage": null, the
 * usage-only chunk and [DONE], cut into 4 KiB buffers as a proxy reads
 * them, events crossing buffer ends held as the filter holds them.
 */

#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quota_usage_trim.h"


#define EVENTS   10000
#define BUFFER   4096


int
main(int argc, char **argv)
{
    int                 rounds, r, i;
    size_t              len, at, piece, n, k, held, out;
    char               *stream;
    unsigned char       hold[16384];
    struct timespec     t0, t1;
    quota_sse_split_t   s;

    rounds = argc > 1 ? atoi(argv[1]) : 20;

    stream = malloc((size_t) EVENTS * 512 + 512);
    if (stream == NULL) {
        return 1;
    }

    len = 0;

    for (i = 0; i < EVENTS; i++) {
        len += (size_t) sprintf(stream + len,
            "data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\","
            "\"object\":\"chat.completion.chunk\",\"created\":1741569952,"
            "\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":"
            "\"fp_eb9dce56a8\",\"choices\":[{\"index\":0,\"delta\":"
            "{\"content\":\"word%d \"},\"logprobs\":null,"
            "\"finish_reason\":null}],\"usage\":null}\n\n", i);
    }

    len += (size_t) sprintf(stream + len,
        "data: {\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\","
        "\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":"
        "{\"prompt_tokens\":19,\"completion_tokens\":10,"
        "\"total_tokens\":29}}\n\ndata: [DONE]\n\n");

    out = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (r = 0; r < rounds; r++) {
        quota_sse_split_init(&s);
        held = 0;

        for (at = 0; at < len; at += piece) {
            piece = len - at < BUFFER ? len - at : BUFFER;

            for (k = 0; k < piece; k += n) {
                n = quota_sse_split(&s, (unsigned char *) stream + at + k,
                                    piece - k);

                if (n == 0) {
                    memcpy(hold + held, stream + at + k, piece - k);
                    held += piece - k;
                    break;
                }

                if (held) {
                    memcpy(hold + held, stream + at + k, n);
                    out += quota_usage_trim_event(hold, held + n);
                    held = 0;
                    continue;
                }

                /* in place, as in the proxy's buffer: on a copy here */
                memcpy(hold, stream + at + k, n);
                out += quota_usage_trim_event(hold, n);
            }
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);

    printf("%d events x %d rounds, %zu bytes out a round, %.0f ns an event\n",
           EVENTS + 2, rounds, out / (size_t) rounds,
           ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec))
           / ((double) rounds * (EVENTS + 2)));

    free(stream);

    return 0;
}
