/*
 * What `quota_stream_usage on` added to a Chat Completions stream, taken
 * out again, so that the client receives the stream it asked for.
 * Asking for the usage (stream_options.include_usage) makes the upstream
 * send one more event, a chunk with "choices": [] and the "usage", and a
 * "usage": null member in every other chunk; code that reads
 * chunk.choices[0] of every chunk breaks on the first.  The usage is read
 * as it goes by (quota_usage.h); here each event is cut out of the bytes
 * (quota_sse_split) and, once whole, given back as it came, without its
 * "usage": null, or not at all (quota_usage_trim_event).  Pure C, no
 * nginx.
 */

#ifndef QUOTA_USAGE_TRIM_H
#define QUOTA_USAGE_TRIM_H

#include <stddef.h>


/* where the bytes so far left the event in progress */
typedef struct {
    unsigned              cr:1;          /* a \r ended the last line */
    unsigned              line_empty:1;  /* nothing on this line yet */
    unsigned              lf_owed:1;     /* an event ended on a \r last */
} quota_sse_split_t;


void quota_sse_split_init(quota_sse_split_t *s);

/*
 * The number of bytes of p up to and including the blank line that ends
 * the event in progress, or 0 when p does not end it (all of p is then
 * the event's).  Lines end in \r\n, \n or \r, as the SSE format allows.
 */
size_t quota_sse_split(quota_sse_split_t *s, const unsigned char *p,
    size_t len);

/*
 * An event whose blank line ended on a \r that was the last byte fed
 * owns the \n that may come first in the next bytes: 1 when p starts
 * with it (the caller treats that byte as the previous event's), else 0.
 * Asks only once per such event.
 */
int quota_sse_split_owed(quota_sse_split_t *s, const unsigned char *p,
    size_t len);

/*
 * One whole event ev[0..len), rewritten in place; returns its new length:
 * 0 for the usage-only chunk (a single data line holding a JSON object
 * with an empty "choices" array and a "usage" object), less than len for
 * a chunk whose top-level "usage": null member (and one comma) was taken
 * out, len for anything else, which is left as it is.
 */
size_t quota_usage_trim_event(unsigned char *ev, size_t len);

#endif /* QUOTA_USAGE_TRIM_H */
