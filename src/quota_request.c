/*
 * Chat request bodies.  The body is parsed once with jansson (which
 * refuses invalid UTF-8, trailing bytes and nesting past 2048 levels);
 * the walk over the tree below only descends into the fixed shapes of
 * the three APIs, so its own depth is bounded by the code, not by the
 * body.  The one place that measures an arbitrary subtree (the size of
 * "tools", of a tool_use block's input) first checks that the subtree is
 * at most QUOTA_REQUEST_DEPTH levels deep; a deeper one is not measured
 * but counted as the size of the whole body, once per request, which is
 * more than any part of it can be.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "quota_request.h"
#include "quota_skeleton.h"


#define QUOTA_REQUEST_DEPTH  64

/* the longest string read as an output bound: digits and some spaces */
#define QUOTA_REQUEST_BOUND_LEN  64


typedef struct {
    uint64_t              bytes;        /* text, in UTF-8 bytes */
    uint64_t              tokens;       /* part and message allowances */
    size_t                len;          /* of the body */
    quota_string_t       *strings;      /* taken out of the skeleton */
    size_t                nstrings;
    unsigned              deep:1;       /* the body's size was counted */
    unsigned              anthropic:1;  /* a block only Messages has */
} quota_count_t;


static void quota_request_model(json_t *root, quota_request_t *req);
static void quota_request_max_output(json_t *root, quota_request_t *req);
static int64_t quota_request_bound(json_t *v);
static void quota_request_input(json_t *root, quota_count_t *c);
static quota_api_e quota_request_api(json_t *root, quota_count_t *c);
static int quota_request_ends(const unsigned char *path, size_t len,
    const char *tail);
static void quota_request_message(json_t *msg, quota_count_t *c);
static void quota_request_content(json_t *content, int level,
    quota_count_t *c);
static void quota_request_part(json_t *part, int level, quota_count_t *c);
static void quota_request_strings(json_t *v, quota_count_t *c);
static void quota_request_size(json_t *v, quota_count_t *c);
static int quota_request_shallow(json_t *v, int depth, quota_count_t *c,
    uint64_t *extra);
static void quota_request_add(uint64_t *sum, uint64_t n);
static void quota_request_text(quota_count_t *c, json_t *v);
static quota_string_t *quota_request_placeholder(quota_count_t *c,
    json_t *v);


int
quota_request_parse(const unsigned char *body, size_t len,
    quota_request_t *req)
{
    size_t          n;
    json_t         *root, *v;
    uint64_t        tokens;
    quota_count_t   c;
    unsigned char  *skeleton;

    memset(req, 0, sizeof(quota_request_t));
    req->max_output = -1;

    if (body == NULL || len == 0) {
        return -1;
    }

    memset(&c, 0, sizeof(quota_count_t));
    c.len = len;

    skeleton = NULL;

    if (len >= QUOTA_SKELETON_MIN && !quota_skeleton_has_nul(body, len)) {
        skeleton = quota_skeleton(body, len, &n, &c.strings, &c.nstrings);
    }

    if (skeleton) {
        root = json_loadb((const char *) skeleton, n, JSON_ALLOW_NUL, NULL);
        free(skeleton);

    } else {
        root = json_loadb((const char *) body, len, 0, NULL);
    }

    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        free(c.strings);
        return -1;
    }

    quota_request_model(root, req);
    quota_request_max_output(root, req);

    req->stream = json_is_true(json_object_get(root, "stream"));

    v = json_object_get(root, "stream_options");

    if (v) {
        req->stream_options = 1;
        req->include_usage = json_is_true(json_object_get(v,
                                                          "include_usage"));
    }

    quota_request_input(root, &c);

    req->api = quota_request_api(root, &c);

    json_decref(root);
    free(c.strings);

    tokens = c.bytes / QUOTA_REQUEST_BYTES_PER_TOKEN
             + (c.bytes % QUOTA_REQUEST_BYTES_PER_TOKEN != 0);

    quota_request_add(&tokens, c.tokens);

    req->input_tokens = tokens > INT64_MAX ? INT64_MAX : (int64_t) tokens;

    return 0;
}


long
quota_request_usage_insert_at(const unsigned char *body, size_t len,
    const quota_request_t *req)
{
    size_t  i;

    if (body == NULL || req == NULL || !req->stream || req->stream_options
        || req->api != QUOTA_API_CHAT)
    {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (body[i] == ' ' || body[i] == '\t' || body[i] == '\n'
            || body[i] == '\r')
        {
            continue;
        }

        return body[i] == '{' ? (long) i + 1 : -1;
    }

    return -1;
}


void
quota_request_api_refine(quota_request_t *req, const unsigned char *path,
    size_t len, int anthropic_version)
{
    if (req->api == QUOTA_API_CHAT
        && (anthropic_version || quota_request_ends(path, len, "/messages")))
    {
        req->api = QUOTA_API_MESSAGES;
    }

    if (quota_request_ends(path, len, "/responses")) {
        req->api = QUOTA_API_RESPONSES;
    }
}


static int
quota_request_ends(const unsigned char *path, size_t len, const char *tail)
{
    size_t  n;

    n = strlen(tail);

    return path != NULL && len >= n
           && memcmp(path + len - n, tail, n) == 0;
}


static quota_api_e
quota_request_api(json_t *root, quota_count_t *c)
{
    static const char  *anthropic[] = {
        "system", "top_k", "stop_sequences", "thinking"
    };

    unsigned  i;

    if (!json_is_array(json_object_get(root, "messages"))) {
        return json_object_get(root, "input") ? QUOTA_API_RESPONSES
                                              : QUOTA_API_OTHER;
    }

    if (c->anthropic) {
        return QUOTA_API_MESSAGES;
    }

    for (i = 0; i < sizeof(anthropic) / sizeof(anthropic[0]); i++) {
        if (json_object_get(root, anthropic[i])) {
            return QUOTA_API_MESSAGES;
        }
    }

    return QUOTA_API_CHAT;
}


static void
quota_request_model(json_t *root, quota_request_t *req)
{
    size_t   n;
    json_t  *v;

    v = json_object_get(root, "model");

    if (!json_is_string(v)) {
        return;
    }

    n = json_string_length(v);

    /* a NUL is no model name, and could be a skeleton's placeholder */
    if (n >= QUOTA_MODEL_MAX || memchr(json_string_value(v), '\0', n)) {
        return;
    }

    memcpy(req->model, json_string_value(v), n);
    req->model_len = n;
}


/*
 * Some clients send the bound as a string, which the APIs accept, so it
 * binds the upstream as the number would: a string holding a JSON number,
 * white space around it allowed, its digits read as a real so that one
 * past int64 is capped like any huge bound rather than refused.  A long
 * string is prose or a skeleton's placeholder, never a bound.  Whatever
 * is no whole number >= 1 binds nothing the estimate could trust:
 * quota_max_tokens applies.
 */

static void
quota_request_max_output(json_t *root, quota_request_t *req)
{
    static const char  *names[] = {
        "max_tokens", "max_completion_tokens", "max_output_tokens"
    };

    json_t      *v, *num;
    int64_t      n;
    unsigned     i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        v = json_object_get(root, names[i]);

        if (json_is_string(v)
            && json_string_length(v) <= QUOTA_REQUEST_BOUND_LEN)
        {
            num = json_loadb(json_string_value(v), json_string_length(v),
                             JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);

            n = json_is_number(num) ? quota_request_bound(num) : -1;

            json_decref(num);

        } else {
            n = quota_request_bound(v);
        }

        if (n > req->max_output) {
            req->max_output = n;
        }
    }
}


/*
 * a JSON number as an output bound, -1 if it is none; no model writes
 * more than the cap, and a bound past it would only reserve more than any
 * budget
 */

static int64_t
quota_request_bound(json_t *v)
{
    double   d;
    int64_t  n;

    if (json_is_integer(v)) {
        n = json_integer_value(v);

        if (n <= 0) {
            return -1;
        }

        return n > QUOTA_REQUEST_MAX_OUTPUT ? QUOTA_REQUEST_MAX_OUTPUT : n;
    }

    if (!json_is_real(v)) {
        return -1;
    }

    d = json_real_value(v);

    /* every double from 2^53 up is integral, and too big */
    if (!(d >= 1.0) || (d < 9.0e15 && d != (double) (int64_t) d)) {
        return -1;
    }

    return d >= (double) QUOTA_REQUEST_MAX_OUTPUT
           ? QUOTA_REQUEST_MAX_OUTPUT : (int64_t) d;
}


static void
quota_request_input(json_t *root, quota_count_t *c)
{
    size_t   i;
    json_t  *v, *item;

    v = json_object_get(root, "messages");

    json_array_foreach(v, i, item) {
        quota_request_message(item, c);
    }

    /* "input": a string, or items shaped like messages */

    v = json_object_get(root, "input");

    if (json_is_array(v)) {
        json_array_foreach(v, i, item) {
            quota_request_message(item, c);
        }

    } else {
        quota_request_strings(v, c);
    }

    /* "prompt": a string, strings, or token ids */

    quota_request_strings(json_object_get(root, "prompt"), c);

    /* Anthropic's "system" and the Responses API's "instructions" */

    quota_request_content(json_object_get(root, "system"), 0, c);
    quota_request_content(json_object_get(root, "instructions"), 0, c);

    v = json_object_get(root, "tools");

    if (json_is_array(v)) {
        json_array_foreach(v, i, item) {
            quota_request_size(item, c);
        }

    } else if (v) {
        quota_request_size(v, c);
    }
}


/*
 * A message, or an item of "input": its framing, its content, the
 * arguments of its tool calls, and the Responses API's function_call
 * "arguments" and function_call_output "output" strings.
 */

static void
quota_request_message(json_t *msg, quota_count_t *c)
{
    size_t   i;
    json_t  *calls, *call, *v;

    quota_request_add(&c->tokens, QUOTA_REQUEST_MESSAGE_TOKENS);

    if (json_is_string(msg)) {
        quota_request_text(c, msg);
        return;
    }

    if (!json_is_object(msg)) {
        return;
    }

    quota_request_content(json_object_get(msg, "content"), 0, c);

    calls = json_object_get(msg, "tool_calls");

    json_array_foreach(calls, i, call) {
        v = json_object_get(json_object_get(call, "function"), "arguments");

        if (json_is_string(v)) {
            quota_request_text(c, v);
        }
    }

    v = json_object_get(msg, "arguments");

    if (json_is_string(v)) {
        quota_request_text(c, v);
    }

    v = json_object_get(msg, "output");

    if (json_is_string(v)) {
        quota_request_text(c, v);
    }
}


/* content: a string, or an array of parts; level bounds tool_result */

static void
quota_request_content(json_t *content, int level, quota_count_t *c)
{
    size_t   i;
    json_t  *part;

    if (json_is_string(content)) {
        quota_request_text(c, content);
        return;
    }

    json_array_foreach(content, i, part) {
        quota_request_part(part, level, c);
    }
}


/*
 * A part with a "text" string is its text.  Anthropic's tool_result is
 * its content (one level of it) and tool_use the size of its input.  Any
 * other part (an image, a file, audio) counts a fixed allowance and not
 * its bytes: a base64 image would otherwise look like a million tokens.
 */

static void
quota_request_part(json_t *part, int level, quota_count_t *c)
{
    json_t      *v;
    const char  *type;

    if (json_is_string(part)) {
        quota_request_text(c, part);
        return;
    }

    v = json_object_get(part, "text");

    if (json_is_string(v)) {
        quota_request_text(c, v);
        return;
    }

    type = json_string_value(json_object_get(part, "type"));

    if (type
        && (strcmp(type, "tool_use") == 0 || strcmp(type, "tool_result") == 0
            || strcmp(type, "thinking") == 0
            || strcmp(type, "redacted_thinking") == 0
            || strcmp(type, "document") == 0
            || (strcmp(type, "image") == 0
                && json_object_get(part, "source") != NULL)))
    {
        c->anthropic = 1;
    }

    if (type && level == 0 && strcmp(type, "tool_result") == 0) {
        quota_request_content(json_object_get(part, "content"), 1, c);
        return;
    }

    if (type && strcmp(type, "tool_use") == 0) {
        v = json_object_get(part, "input");

        if (v) {
            quota_request_size(v, c);
            return;
        }
    }

    quota_request_add(&c->tokens, QUOTA_REQUEST_PART_TOKENS);
}


/* "prompt" or "input": a string, or an array of strings or token ids */

static void
quota_request_strings(json_t *v, quota_count_t *c)
{
    size_t   i, j;
    json_t  *item, *id;

    if (json_is_string(v)) {
        quota_request_text(c, v);
        return;
    }

    json_array_foreach(v, i, item) {
        if (json_is_string(item)) {
            quota_request_text(c, item);

        } else if (json_is_integer(item)) {
            quota_request_add(&c->tokens, 1);

        } else {
            json_array_foreach(item, j, id) {
                if (json_is_integer(id)) {
                    quota_request_add(&c->tokens, 1);
                }
            }
        }
    }
}


/*
 * the length of v's compact serialization, each placeholder counted as
 * the string it stands for
 */

static void
quota_request_size(json_t *v, quota_count_t *c)
{
    uint64_t  size, extra;

    extra = 0;

    if (quota_request_shallow(v, 0, c, &extra)) {
        /* a NULL buffer of size 0 only measures */
        size = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
        quota_request_add(&size, extra);
        quota_request_add(&c->bytes, size);
        return;
    }

    if (!c->deep) {
        c->deep = 1;
        quota_request_add(&c->bytes, c->len);
    }
}


/*
 * v nests at most QUOTA_REQUEST_DEPTH levels (the recursion stops there);
 * *extra gains what its placeholders' strings add to its serialization
 */

static int
quota_request_shallow(json_t *v, int depth, quota_count_t *c,
    uint64_t *extra)
{
    size_t           i;
    json_t          *item;
    const char      *key;
    quota_string_t  *str;

    if (json_is_string(v)) {
        str = quota_request_placeholder(c, v);

        if (str) {
            /* what jansson writes: quotes, "\u0000" and the number */
            quota_request_add(extra,
                              str->json - (8 + json_string_length(v) - 1));
        }

        return 1;
    }

    if (!json_is_array(v) && !json_is_object(v)) {
        return 1;
    }

    if (depth == QUOTA_REQUEST_DEPTH) {
        return 0;
    }

    if (json_is_array(v)) {
        json_array_foreach(v, i, item) {
            if (!quota_request_shallow(item, depth + 1, c, extra)) {
                return 0;
            }
        }

        return 1;
    }

    json_object_foreach(v, key, item) {
        if (!quota_request_shallow(item, depth + 1, c, extra)) {
            return 0;
        }
    }

    return 1;
}


/* adds the text of string v, or of the string its placeholder stands for */

static void
quota_request_text(quota_count_t *c, json_t *v)
{
    quota_string_t  *str;

    str = quota_request_placeholder(c, v);

    quota_request_add(&c->bytes, str ? str->text : json_string_length(v));
}


static quota_string_t *
quota_request_placeholder(quota_count_t *c, json_t *v)
{
    size_t       i, n, k;
    const char  *p;

    if (c->strings == NULL || !json_is_string(v)) {
        return NULL;
    }

    p = json_string_value(v);
    n = json_string_length(v);

    if (n < 2 || p[0] != '\0') {
        return NULL;
    }

    k = 0;

    for (i = 1; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return NULL;
        }

        k = k * 10 + (size_t) (p[i] - '0');

        if (k >= c->nstrings) {
            return NULL;
        }
    }

    return &c->strings[k];
}


static void
quota_request_add(uint64_t *sum, uint64_t n)
{
    *sum = *sum > UINT64_MAX - n ? UINT64_MAX : *sum + n;
}


/* whether body may hold the escape "\u0000" a placeholder starts with */
