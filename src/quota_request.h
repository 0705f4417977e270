/*
 * What a chat request asks for, read from its JSON body before the call:
 * the model, the bound on output tokens and how much input it sends, in
 * the shapes of OpenAI Chat Completions, the Responses API and Anthropic
 * Messages.  Pure C with jansson, no nginx.
 */

#ifndef QUOTA_REQUEST_H
#define QUOTA_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "quota_price.h"


/*
 * Input tokens are estimated from the bytes of text sent: 1 token per 3
 * bytes, rounded up.  English runs about 4 bytes a token and CJK text
 * about 3, so this errs towards charging too much.  A part that is not
 * text (an image, a file) counts QUOTA_REQUEST_PART_TOKENS tokens, and
 * every message QUOTA_REQUEST_MESSAGE_TOKENS for its framing.
 */
#define QUOTA_REQUEST_BYTES_PER_TOKEN   3
#define QUOTA_REQUEST_PART_TOKENS       1600
#define QUOTA_REQUEST_MESSAGE_TOKENS    4

/* output bounds above this are read as this */
#define QUOTA_REQUEST_MAX_OUTPUT        10000000


/* which API the request speaks, as far as its shape tells */
typedef enum {
    QUOTA_API_OTHER = 0,        /* neither "messages" nor "input" */
    QUOTA_API_CHAT,             /* OpenAI Chat Completions */
    QUOTA_API_MESSAGES,         /* Anthropic Messages */
    QUOTA_API_RESPONSES         /* OpenAI Responses */
} quota_api_e;


typedef struct {
    unsigned char         model[QUOTA_MODEL_MAX];
    size_t                model_len;        /* 0: no "model" string */

    int64_t               max_output;       /* -1: no bound given */
    int64_t               input_tokens;     /* estimated */

    unsigned              stream:1;         /* "stream": true */
    unsigned              stream_options:1; /* "stream_options" present */
    unsigned              include_usage:1;  /* ...include_usage: true */
    unsigned              api:2;            /* quota_api_e */
} quota_request_t;


/*
 * Reads body.  Returns 0 when body is a JSON object (req filled), -1
 * otherwise (malformed, truncated, not an object, nested too deep: req
 * is zeroed with max_output -1).  The insides of string values of 256
 * bytes or more are counted, not validated: escapes and UTF-8 in the
 * prose of a message are the upstream's to refuse.  A "model" longer
 * than QUOTA_MODEL_MAX counts as no model.  Never reads past len, never
 * crashes on any bytes.
 *
 * The output bound is the largest of "max_tokens",
 * "max_completion_tokens" and "max_output_tokens" that is a whole number
 * >= 1, or a string holding one ("100000"); above
 * QUOTA_REQUEST_MAX_OUTPUT it is that cap.
 *
 * Counted as input: "messages" (string content, content-part arrays,
 * tool calls' arguments), "prompt" (string or array), "input" (string or
 * array of items), "instructions", "system" (string or array of text
 * blocks), and "tools" (their JSON size).
 */
int quota_request_parse(const unsigned char *body, size_t len,
    quota_request_t *req);

/*
 * The API is read from the body's shape: "messages" is Chat Completions
 * unless something only Anthropic Messages has is there (a top-level
 * "system", "top_k", "stop_sequences", "thinking", a content block of
 * type tool_use, tool_result, thinking, document or an image with a
 * "source"); "input" without "messages" is the Responses API.  A minimal
 * body ({"model", "max_tokens", "messages"}) is valid in both Chat
 * Completions and Messages, so what the request says besides its body
 * decides too: an anthropic-version header, which every Anthropic client
 * sends, or a path ending in /messages makes it Messages, a path ending
 * in /responses the Responses API.
 */
void quota_request_api_refine(quota_request_t *req, const unsigned char *path,
    size_t len, int anthropic_version);

/*
 * The byte offset in body just after the top-level object's "{", where
 * `"stream_options":{"include_usage":true},` can be inserted when a Chat
 * Completions request streams and has no "stream_options"; -1 when it
 * should not be: no other API knows the member, and Anthropic's refuses
 * the request with 400 for it.
 */
long quota_request_usage_insert_at(const unsigned char *body, size_t len,
    const quota_request_t *req);

#endif /* QUOTA_REQUEST_H */
