/*
 * The usage in a response, read as the bytes pass.
 *
 * JSON mode runs a byte-wise state machine over the body (strings,
 * escapes, bracket depth) that only looks at the keys of the top-level
 * object: the value of "usage" is copied into buf, from its "{" to the
 * matching "}", and parsed with jansson once complete; the value of
 * "model" likewise.  A "usage" inside a nested object or a string is at
 * another depth or in another state, and is never taken.  A key written
 * with escapes ("\u0075sage") is not matched: no upstream writes one.
 *
 * SSE mode splits lines (LF, CRLF, CR, split anywhere), keeps the data
 * lines of one event in buf and, on the blank line that ends it, parses
 * it with jansson only when it holds a "usage" key with an object value:
 * an ordinary content chunk costs a memchr-like scan.  An event over
 * QUOTA_USAGE_EVENT_MAX bytes is dropped whole and the scanner picks up
 * at the next one.
 *
 * Nothing is allocated between calls: every json_t is freed before a
 * call returns.
 */

#include <limits.h>
#include <string.h>

#include <jansson.h>

#include "quota_usage.h"


/* JSON mode: where the scanner is in the top-level object */
enum {
    QUOTA_JSON_KEY = 0,         /* before a key, or the closing brace */
    QUOTA_JSON_IN_KEY,
    QUOTA_JSON_COLON,           /* after a key */
    QUOTA_JSON_VALUE,           /* after the colon */
    QUOTA_JSON_IN_VALUE
};

/* JSON mode: the depth-1 keys whose values are wanted */
enum {
    QUOTA_WANT_NONE = 0,
    QUOTA_WANT_USAGE,
    QUOTA_WANT_MODEL
};

/* SSE mode: where the scanner is in the line */
enum {
    QUOTA_SSE_LINE = 0,         /* at its start */
    QUOTA_SSE_FIELD,            /* in the field name */
    QUOTA_SSE_DATA_SPACE,       /* just after "data:" */
    QUOTA_SSE_DATA,
    QUOTA_SSE_IGNORE            /* a comment, another field */
};


static void quota_usage_json(quota_usage_scan_t *s, const unsigned char *p,
    size_t len);
static void quota_usage_json_byte(quota_usage_scan_t *s, unsigned char c);
static void quota_usage_capture_end(quota_usage_scan_t *s);
static void quota_usage_sse(quota_usage_scan_t *s, const unsigned char *p,
    size_t len);
static void quota_usage_line_end(quota_usage_scan_t *s);
static void quota_usage_data_begin(quota_usage_scan_t *s);
static void quota_usage_dispatch(quota_usage_scan_t *s);
static int quota_usage_wanted(const unsigned char *p, size_t len);
static void quota_usage_apply(quota_usage_scan_t *s, json_t *u, int final);
static int quota_usage_count(json_t *obj, const char *key, int64_t *n);
static void quota_usage_model(quota_usage_scan_t *s, json_t *v);
static void quota_usage_append(quota_usage_scan_t *s, const unsigned char *p,
    size_t len);
static void quota_usage_key_add(quota_usage_scan_t *s, unsigned char c);
static int quota_usage_key_is(quota_usage_scan_t *s, const char *name);


void
quota_usage_init(quota_usage_scan_t *s, quota_usage_mode_e mode)
{
    /* buf is always written before it is read: 16 KiB left alone */
    memset(s, 0, offsetof(quota_usage_scan_t, buf));
    s->mode = mode;
}


void
quota_usage_feed(quota_usage_scan_t *s, const unsigned char *p, size_t len)
{
    if (s == NULL || p == NULL || len == 0) {
        return;
    }

    if (s->mode == QUOTA_USAGE_SSE) {
        quota_usage_sse(s, p, len);

    } else {
        quota_usage_json(s, p, len);
    }
}


void
quota_usage_finish(quota_usage_scan_t *s)
{
    if (s == NULL || s->mode != QUOTA_USAGE_SSE) {
        return;
    }

    if (s->state != QUOTA_SSE_LINE) {
        quota_usage_line_end(s);
    }

    quota_usage_dispatch(s);
    s->cr = 0;
}


void
quota_usage_tokens(const quota_usage_t *u, quota_tokens_t *t)
{
    int64_t  cached;

    cached = u->cached > 0 ? u->cached : 0;

    t->input = u->prompt > cached ? u->prompt - cached : 0;
    t->cached = cached;
    t->output = u->completion > 0 ? u->completion : 0;
}


/*
 * JSON mode.  Bytes of a capture are copied a run at a time: from where
 * it starts (or the start of this buffer) to where it ends (or the end of
 * this buffer).
 */

static void
quota_usage_json(quota_usage_scan_t *s, const unsigned char *p, size_t len)
{
    size_t  i, from;
    int     was;

    from = 0;

    for (i = 0; i < len; i++) {

        if (s->in_string && !s->escaped && s->state != QUOTA_JSON_IN_KEY) {
            /* the bulk of a body: string bytes with nothing to do */
            while (i < len && p[i] != '"' && p[i] != '\\') {
                i++;
            }

            if (i == len) {
                break;
            }
        }

        was = s->capturing;

        quota_usage_json_byte(s, p[i]);

        if (!was && s->capturing) {
            from = i;

        } else if (was && !s->capturing) {
            quota_usage_append(s, p + from, i + 1 - from);
            quota_usage_capture_end(s);
        }
    }

    if (s->capturing) {
        quota_usage_append(s, p + from, len - from);
    }
}


/* one byte; starts or ends a capture by setting s->capturing */

static void
quota_usage_json_byte(quota_usage_scan_t *s, unsigned char c)
{
    if (s->in_string) {
        if (s->escaped) {
            s->escaped = 0;

        } else if (c == '\\') {
            s->escaped = 1;
            s->key_bad = 1;

        } else if (c != '"') {
            if (s->state == QUOTA_JSON_IN_KEY) {
                quota_usage_key_add(s, c);
            }

        } else {
            s->in_string = 0;

            if (s->state == QUOTA_JSON_IN_KEY) {
                s->state = QUOTA_JSON_COLON;
                s->want = quota_usage_key_is(s, "usage") ? QUOTA_WANT_USAGE
                          : quota_usage_key_is(s, "model") ? QUOTA_WANT_MODEL
                          : QUOTA_WANT_NONE;

            } else if (s->depth == 1) {
                s->capturing = 0;
            }
        }

        return;
    }

    switch (c) {

    case '"':
        s->in_string = 1;

        if (s->depth != 1 || !s->top_object) {
            break;
        }

        if (s->state == QUOTA_JSON_KEY) {
            s->state = QUOTA_JSON_IN_KEY;
            s->key_len = 0;
            s->key_bad = 0;

        } else if (s->state == QUOTA_JSON_VALUE) {
            s->state = QUOTA_JSON_IN_VALUE;
            s->capturing = (s->want == QUOTA_WANT_MODEL);
        }

        break;

    case '{':
    case '[':
        if (s->depth == 0) {
            s->top_object = (c == '{');
            s->state = QUOTA_JSON_KEY;
            s->want = QUOTA_WANT_NONE;

        } else if (s->depth == 1 && s->state == QUOTA_JSON_VALUE) {
            s->state = QUOTA_JSON_IN_VALUE;
            s->capturing = (c == '{' && s->want == QUOTA_WANT_USAGE);
        }

        if (s->depth < INT_MAX) {
            s->depth++;
        }

        break;

    case '}':
    case ']':
        if (s->depth > 0) {
            s->depth--;
        }

        if (s->depth == 1) {
            s->capturing = 0;
        }

        break;

    case ':':
        if (s->depth == 1 && s->state == QUOTA_JSON_COLON) {
            s->state = QUOTA_JSON_VALUE;
        }

        break;

    case ',':
        if (s->depth == 1) {
            s->state = QUOTA_JSON_KEY;
            s->want = QUOTA_WANT_NONE;
        }

        break;

    case ' ':
    case '\t':
    case '\n':
    case '\r':
        break;

    default:
        /* a number, true, false or null */
        if (s->depth == 1 && s->state == QUOTA_JSON_VALUE) {
            s->state = QUOTA_JSON_IN_VALUE;
        }
    }
}


/* a depth-1 value is complete in buf */

static void
quota_usage_capture_end(quota_usage_scan_t *s)
{
    json_t  *v;

    if (!s->overflow) {
        v = json_loadb((const char *) s->buf, s->len, JSON_DECODE_ANY, NULL);

        if (json_is_object(v) && s->want == QUOTA_WANT_USAGE) {
            quota_usage_apply(s, v, 1);

        } else if (s->want == QUOTA_WANT_MODEL) {
            quota_usage_model(s, v);
        }

        json_decref(v);
    }

    s->capturing = 0;
    s->overflow = 0;
    s->len = 0;
}


/* SSE mode */

static void
quota_usage_sse(quota_usage_scan_t *s, const unsigned char *p, size_t len)
{
    size_t         i, j;
    unsigned char  c;

    for (i = 0; i < len; /* void */) {
        c = p[i];

        if (s->cr) {
            s->cr = 0;

            if (c == '\n') {
                /* the rest of a CRLF */
                i++;
                continue;
            }
        }

        if (c == '\n' || c == '\r') {
            quota_usage_line_end(s);
            s->cr = (c == '\r');
            i++;
            continue;
        }

        switch (s->state) {

        case QUOTA_SSE_LINE:
        case QUOTA_SSE_FIELD:
            if (c == ':') {
                if (quota_usage_key_is(s, "data")) {
                    quota_usage_data_begin(s);
                    s->state = QUOTA_SSE_DATA_SPACE;

                } else {
                    s->state = QUOTA_SSE_IGNORE;
                }

            } else {
                quota_usage_key_add(s, c);
                s->state = QUOTA_SSE_FIELD;
            }

            i++;
            break;

        case QUOTA_SSE_DATA_SPACE:
            s->state = QUOTA_SSE_DATA;

            if (c == ' ') {
                i++;
            }

            break;

        default:
            for (j = i; j < len && p[j] != '\n' && p[j] != '\r'; j++) {
                /* void */
            }

            if (s->state == QUOTA_SSE_DATA) {
                quota_usage_append(s, p + i, j - i);
            }

            i = j;
        }
    }
}


static void
quota_usage_line_end(quota_usage_scan_t *s)
{
    switch (s->state) {

    case QUOTA_SSE_LINE:
        quota_usage_dispatch(s);
        break;

    case QUOTA_SSE_FIELD:
        /* "data" alone is a data line with an empty value */
        if (quota_usage_key_is(s, "data")) {
            quota_usage_data_begin(s);
        }

        break;

    default:
        break;
    }

    s->state = QUOTA_SSE_LINE;
    s->key_len = 0;
    s->key_bad = 0;
}


/* data lines of one event are joined with "\n" */

static void
quota_usage_data_begin(quota_usage_scan_t *s)
{
    if (s->has_data) {
        quota_usage_append(s, (const unsigned char *) "\n", 1);
    }

    s->has_data = 1;
}


static void
quota_usage_dispatch(quota_usage_scan_t *s)
{
    size_t   i, j;
    json_t  *root, *where[3], *usage, *model;

    if (!s->has_data || s->overflow || !quota_usage_wanted(s->buf, s->len)) {
        goto done;
    }

    root = json_loadb((const char *) s->buf, s->len, 0, NULL);

    if (root == NULL) {
        goto done;
    }

    /* Chat Completions and Anthropic's message_delta; message_start;
     * the Responses API's response.completed */

    where[0] = root;
    where[1] = json_object_get(root, "message");
    where[2] = json_object_get(root, "response");

    for (i = 0; i < 3; i++) {
        usage = json_object_get(where[i], "usage");

        if (json_is_object(usage)) {
            break;
        }
    }

    if (i < 3) {
        /* message_start's output count is a placeholder */
        quota_usage_apply(s, usage, i != 1);

        for (j = 0; j < 3; j++) {
            model = json_object_get(where[j], "model");

            if (json_is_string(model)) {
                quota_usage_model(s, model);
                break;
            }
        }
    }

    json_decref(root);

done:

    s->has_data = 0;
    s->overflow = 0;
    s->len = 0;
}


/* p holds "usage" as a key with an object value: worth parsing */

static int
quota_usage_wanted(const unsigned char *p, size_t len)
{
    size_t                j;
    const unsigned char  *q, *end;

    end = p + len;

    for (q = p; (q = memchr(q, '"', end - q)) != NULL; q++) {

        if (end - q < 7 || memcmp(q, "\"usage\"", 7) != 0) {
            continue;
        }

        for (j = 7; q + j < end && (q[j] == ' ' || q[j] == '\t'
                                    || q[j] == '\n' || q[j] == '\r'); j++)
        {
            /* void */
        }

        if (q + j == end || q[j] != ':') {
            continue;
        }

        for (j++; q + j < end && (q[j] == ' ' || q[j] == '\t'
                                  || q[j] == '\n' || q[j] == '\r'); j++)
        {
            /* void */
        }

        if (q + j < end && q[j] == '{') {
            return 1;
        }
    }

    return 0;
}


/*
 * One usage object, merged into what is known: each count from the
 * latest object that reports it, as Anthropic's message_delta repeats
 * the output so far.  Input is normalized to all input, cached included.
 *
 * The output count of Anthropic's message_start (final 0) is kept but
 * not taken as seen: it is 1 or so whatever the answer, and a stream
 * cut before its message_delta (a client gone mid-stream) must be
 * charged its estimate, not the input and one token.
 */

static void
quota_usage_apply(quota_usage_scan_t *s, json_t *u, int final)
{
    int64_t  n, extra;

    if (quota_usage_count(u, "prompt_tokens", &n)
        || quota_usage_count(u, "input_tokens", &n))
    {
        /* Anthropic's input_tokens leaves out what the cache read or
         * wrote */

        if (quota_usage_count(u, "cache_read_input_tokens", &extra)) {
            n = extra > INT64_MAX - n ? INT64_MAX : n + extra;
        }

        if (quota_usage_count(u, "cache_creation_input_tokens", &extra)) {
            n = extra > INT64_MAX - n ? INT64_MAX : n + extra;
        }

        s->usage.prompt = n;
        s->seen_input = 1;
    }

    if (quota_usage_count(u, "completion_tokens", &n)
        || quota_usage_count(u, "output_tokens", &n))
    {
        s->usage.completion = n;
        s->seen_output |= final;
    }

    if (quota_usage_count(json_object_get(u, "prompt_tokens_details"),
                          "cached_tokens", &n)
        || quota_usage_count(json_object_get(u, "input_tokens_details"),
                             "cached_tokens", &n)
        || quota_usage_count(u, "cache_read_input_tokens", &n))
    {
        s->usage.cached = n;
    }

    s->usage.found = s->seen_input && s->seen_output;
}


/* a non-negative integer (or an integral real) */

static int
quota_usage_count(json_t *obj, const char *key, int64_t *n)
{
    double   d;
    json_t  *v;

    v = json_object_get(obj, key);

    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            return 0;
        }

        *n = json_integer_value(v);
        return 1;
    }

    if (!json_is_real(v)) {
        return 0;
    }

    d = json_real_value(v);

    if (!(d >= 0.0)) {
        return 0;
    }

    if (d >= 9.2e18) {
        *n = INT64_MAX;
        return 1;
    }

    if (d != (double) (int64_t) d) {
        return 0;
    }

    *n = (int64_t) d;
    return 1;
}


static void
quota_usage_model(quota_usage_scan_t *s, json_t *v)
{
    size_t  n;

    if (!json_is_string(v)) {
        return;
    }

    n = json_string_length(v);

    if (n == 0 || n >= QUOTA_MODEL_MAX) {
        return;
    }

    memcpy(s->usage.model, json_string_value(v), n);
    s->usage.model_len = n;
}


static void
quota_usage_append(quota_usage_scan_t *s, const unsigned char *p,
    size_t len)
{
    if (s->overflow) {
        return;
    }

    if (len > QUOTA_USAGE_EVENT_MAX - s->len) {
        s->overflow = 1;
        return;
    }

    memcpy(s->buf + s->len, p, len);
    s->len += len;
}


static void
quota_usage_key_add(quota_usage_scan_t *s, unsigned char c)
{
    if (s->key_len < sizeof(s->key)) {
        s->key[s->key_len++] = c;

    } else {
        s->key_bad = 1;
    }
}


static int
quota_usage_key_is(quota_usage_scan_t *s, const char *name)
{
    size_t  n;

    n = strlen(name);

    return !s->key_bad && s->key_len == n && memcmp(s->key, name, n) == 0;
}
