/*
 * The usage an LLM upstream reports, found in its response as the bytes
 * go by: in a JSON body (the top-level "usage" object) or in an SSE
 * stream (the events that carry usage).  Fed buffer by buffer, in any
 * splits, holding at most QUOTA_USAGE_EVENT_MAX bytes of one event and
 * never the whole response.  Pure C with jansson, no nginx.
 *
 * Shapes understood:
 *   OpenAI Chat Completions, JSON and SSE (the final chunk sent with
 *     stream_options.include_usage): usage.prompt_tokens,
 *     usage.completion_tokens, usage.prompt_tokens_details.cached_tokens
 *     (part of prompt_tokens);
 *   OpenAI Responses API: usage.input_tokens, usage.output_tokens,
 *     usage.input_tokens_details.cached_tokens (part of input_tokens), in
 *     the JSON body or in the "response.completed" event's response.usage;
 *   Anthropic Messages: usage.input_tokens, usage.output_tokens,
 *     usage.cache_read_input_tokens, usage.cache_creation_input_tokens;
 *     streamed as message_start (message.usage: input) and message_delta
 *     (usage: output so far), merged.
 *
 * The model the upstream reports, which prices the usage, is the
 * top-level "model" of a JSON body, and in a stream the "model" beside
 * the usage it reports: the chunk's, message_start's message.model, the
 * Responses API's response.model.  A later report replaces it.
 */

#ifndef QUOTA_USAGE_H
#define QUOTA_USAGE_H

#include <stddef.h>
#include <stdint.h>

#include "quota_price.h"


#define QUOTA_USAGE_EVENT_MAX   16384    /* one SSE event, or usage object */


typedef enum {
    QUOTA_USAGE_JSON = 0,
    QUOTA_USAGE_SSE
} quota_usage_mode_e;


typedef struct {
    int64_t               prompt;        /* all input, cached included */
    int64_t               cached;        /* input read from a cache */
    int64_t               completion;    /* output */
    unsigned char         model[QUOTA_MODEL_MAX];   /* as reported */
    size_t                model_len;
    unsigned              found:1;       /* input and output both seen */
} quota_usage_t;


typedef struct {
    quota_usage_mode_e    mode;
    quota_usage_t         usage;

    /* scanner state: private */
    int                   state;        /* where in the object or line */
    int                   depth;        /* JSON: open brackets */
    int                   want;         /* JSON: the depth-1 key matched */
    unsigned              in_string:1;
    unsigned              escaped:1;
    unsigned              top_object:1; /* JSON: depth 1 is an object */
    unsigned              key_bad:1;    /* the key cannot match */
    unsigned              capturing:1;  /* JSON: buf takes the value */
    unsigned              overflow:1;   /* buf would pass its size */
    unsigned              cr:1;         /* SSE: a \r ended the last line */
    unsigned              has_data:1;   /* SSE: the event has a data line */
    unsigned              seen_input:1;
    unsigned              seen_output:1;
    size_t                key_len;
    unsigned char         key[8];
    size_t                len;          /* bytes in buf */
    unsigned char         buf[QUOTA_USAGE_EVENT_MAX];
} quota_usage_scan_t;


void quota_usage_init(quota_usage_scan_t *s, quota_usage_mode_e mode);

/* feeds the next bytes of the response body */
void quota_usage_feed(quota_usage_scan_t *s, const unsigned char *p,
    size_t len);

/* the body has ended: an SSE event without its blank line still counts */
void quota_usage_finish(quota_usage_scan_t *s);

/* the tokens of u in the form prices apply to */
void quota_usage_tokens(const quota_usage_t *u, quota_tokens_t *t);

#endif /* QUOTA_USAGE_H */
