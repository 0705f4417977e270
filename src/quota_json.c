/*
 * Response bodies.  Built by hand rather than with jansson: scope values
 * are arbitrary bytes that jansson refuses unless they are UTF-8, and a
 * tenant still deserves a readable 429 when its id is not.
 */

#include <string.h>

#include "quota_json.h"
#include "quota_money.h"
#include "quota_redis_cmd.h"


/*
 * a ledger row has a dozen integers: each written in place when the
 * buffer has the room quota_redis_cmd_int() asks for
 */
#define QUOTA_OUT_INT_ROOM  21

void
quota_out_int(quota_out_t *o, int64_t v)
{
    char  tmp[24];

    if (o->len < o->size && o->size - o->len >= QUOTA_OUT_INT_ROOM) {
        o->len += quota_redis_cmd_int(o->p + o->len, v);
        return;
    }

    quota_out_bytes(o, tmp, quota_redis_cmd_int(tmp, v));
}


void
quota_out_money(quota_out_t *o, int64_t micros)
{
    char  tmp[QUOTA_MONEY_LEN];

    quota_out_bytes(o, tmp, quota_money_format(micros, tmp));
}


size_t
quota_utf8_len(const unsigned char *s, size_t len)
{
    size_t         n, i;
    unsigned char  lo, hi;

    lo = 0x80;
    hi = 0xbf;

    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;

    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        lo = s[0] == 0xe0 ? 0xa0 : 0x80;
        hi = s[0] == 0xed ? 0x9f : 0xbf;

    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        lo = s[0] == 0xf0 ? 0x90 : 0x80;
        hi = s[0] == 0xf4 ? 0x8f : 0xbf;

    } else {
        return 0;
    }

    if (len < n || s[1] < lo || s[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}


/* the inside of a JSON string literal */
static void
quota_out_escaped(quota_out_t *o, const unsigned char *s, size_t len)
{
    static const char  hex[] = "0123456789abcdef";

    char    esc[6];
    size_t  i, n;

    for (i = 0; i < len; /* void */) {

        /* printable ASCII stands for itself: copied a run at a time */

        for (n = i; n < len && s[n] >= 0x20 && s[n] < 0x7f && s[n] != '"'
                    && s[n] != '\\'; n++)
        {
            /* void */
        }

        if (n > i) {
            quota_out_bytes(o, s + i, n - i);
            i = n;
            continue;
        }

        if (s[i] >= 0x80) {
            n = quota_utf8_len(s + i, len - i);

            if (n == 0) {
                quota_out_str(o, "\\ufffd");
                i++;

            } else {
                quota_out_bytes(o, s + i, n);
                i += n;
            }

            continue;
        }

        if (s[i] == '\0') {
            /* valid JSON, yet refused by many parsers, jsonb among them */
            quota_out_str(o, "\\ufffd");

        } else if (s[i] == '"' || s[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char) s[i];
            quota_out_bytes(o, esc, 2);

        } else {
            /* a control character or DEL */
            esc[0] = '\\';
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[s[i] >> 4];
            esc[5] = hex[s[i] & 0xf];
            quota_out_bytes(o, esc, 6);
        }

        i++;
    }
}


void
quota_out_string(quota_out_t *o, const unsigned char *s, size_t len)
{
    quota_out_bytes(o, "\"", 1);
    quota_out_escaped(o, s, len);
    quota_out_bytes(o, "\"", 1);
}


size_t
quota_json_string(char *buf, size_t size, const unsigned char *s,
    size_t len)
{
    quota_out_t  o = { buf, size, 0 };

    quota_out_string(&o, s, len);

    return o.len;
}


size_t
quota_json_percent(char *buf, int64_t spent, int64_t limit)
{
    int64_t      tenths;
    quota_out_t  o = { buf, 24, 0 };

    if (spent < 0) {
        spent = 0;
    }

    if (spent > QUOTA_MONEY_MAX) {
        spent = QUOTA_MONEY_MAX;
    }

    if (limit <= 0) {
        tenths = 1000;

    } else {
        tenths = (spent * 1000 + limit / 2) / limit;
    }

    quota_out_int(&o, tenths / 10);
    quota_out_bytes(&o, ".", 1);
    quota_out_int(&o, tenths % 10);

    return o.len;
}


/* "2026-12-02T00:00:00Z" */
void
quota_out_time(quota_out_t *o, int64_t t)
{
    char      buf[32];
    int64_t   days, secs, y;
    unsigned  m, d;

    days = t / 86400;
    secs = t % 86400;

    if (secs < 0) {
        days--;
        secs += 86400;
    }

    quota_civil_from_days(days, &y, &m, &d);

    quota_out_int(o, y);
    buf[0] = '-';
    buf[1] = (char) ('0' + m / 10);
    buf[2] = (char) ('0' + m % 10);
    buf[3] = '-';
    buf[4] = (char) ('0' + d / 10);
    buf[5] = (char) ('0' + d % 10);
    buf[6] = 'T';
    buf[7] = (char) ('0' + secs / 36000);
    buf[8] = (char) ('0' + secs / 3600 % 10);
    buf[9] = ':';
    buf[10] = (char) ('0' + secs % 3600 / 600);
    buf[11] = (char) ('0' + secs % 600 / 60);
    buf[12] = ':';
    buf[13] = (char) ('0' + secs % 60 / 10);
    buf[14] = (char) ('0' + secs % 10);
    buf[15] = 'Z';
    quota_out_bytes(o, buf, 16);
}


/*
 * The Anthropic envelope both official SDKs parse into their error
 * objects: the message sits at the top for OpenAI-style clients and in
 * "error" for Anthropic-style ones; the caller writes the details' fields
 * and closes with quota_out_envelope_close().
 */

typedef void (*quota_message_pt)(quota_out_t *o, const void *arg);

static void
quota_out_envelope_open(quota_out_t *o, const char *type, const char *code,
    quota_message_pt message, const void *arg)
{
    quota_out_str(o, "{\"type\":\"error\",\"message\":\"");
    message(o, arg);
    quota_out_str(o, "\",\"error\":{\"type\":\"");
    quota_out_str(o, type);
    quota_out_str(o, "\",\"code\":\"");
    quota_out_str(o, code);
    quota_out_str(o, "\",\"message\":\"");
    message(o, arg);
    quota_out_str(o, "\",\"param\":null,\"details\":{");
}


static void
quota_out_envelope_close(quota_out_t *o)
{
    quota_out_str(o, "}}}\n");
}


static int
quota_denial_hopeless(const quota_denial_t *d)
{
    return d->estimate > d->limit
           && d->estimate - d->limit > d->burst;
}


const char *
quota_denial_code(const quota_denial_t *d)
{
    return quota_denial_hopeless(d) ? "estimate_exceeds_limit"
                                    : "quota_exceeded";
}


int
quota_denial_retry_useless(const quota_denial_t *d)
{
    return quota_denial_hopeless(d) || d->resets_at - d->now > 60;
}


/* "user bob of tenant acme" */
static void
quota_out_denied_scope(quota_out_t *o, const quota_denial_t *d)
{
    size_t                    i;
    const quota_scope_ref_t  *s;

    s = &d->path[d->depth - 1];

    quota_out_escaped(o, s->name, s->name_len);
    quota_out_str(o, " ");
    quota_out_escaped(o, s->value, s->value_len);

    for (i = d->depth - 1; i > 0; i--) {
        quota_out_str(o, " of ");
        quota_out_escaped(o, d->path[i - 1].name, d->path[i - 1].name_len);
        quota_out_str(o, " ");
        quota_out_escaped(o, d->path[i - 1].value, d->path[i - 1].value_len);
    }
}


/* "$50.00", "60 requests", "3,000 tokens" */
static void
quota_out_amount(quota_out_t *o, quota_unit_e unit, int64_t v)
{
    char  buf[QUOTA_UNIT_AMOUNT_LEN];

    quota_out_bytes(o, buf, quota_unit_format(unit, v, buf));
}


static void
quota_out_denial_message(quota_out_t *o, const void *arg)
{
    const quota_denial_t  *d = arg;

    quota_out_escaped(o, d->meter, d->meter_len);

    if (quota_denial_hopeless(d)) {
        quota_out_str(o, " request estimated at ");
        quota_out_amount(o, d->unit, d->estimate);
        quota_out_str(o, " is larger than the whole limit of ");
        quota_out_denied_scope(o, d);
        quota_out_str(o, ", ");
        quota_out_amount(o, d->unit, d->limit);
        quota_out_str(o, " per ");
        quota_out_str(o, quota_period_name(d->period));
        quota_out_str(o, d->unit == QUOTA_UNIT_REQ
                         ? ": waiting cannot help"
                         : ": waiting cannot help; lower max_tokens");
        return;
    }

    quota_out_str(o, " quota exceeded for ");
    quota_out_denied_scope(o, d);
    quota_out_str(o, ": limit ");
    quota_out_amount(o, d->unit, d->limit);
    quota_out_str(o, " per ");
    quota_out_str(o, quota_period_name(d->period));
    quota_out_str(o, ", spent ");
    quota_out_amount(o, d->unit, d->spent);
    quota_out_str(o, ", requested ");
    quota_out_amount(o, d->unit, d->estimate);
}


/* limit, spent, requested, remaining, under the names given */
static void
quota_out_denial_money(quota_out_t *o, const quota_denial_t *d,
    const char *const names[4])
{
    size_t   i;
    int64_t  v[4];

    v[0] = d->limit;
    v[1] = d->spent;
    v[2] = d->estimate;
    v[3] = d->limit - d->spent > 0 ? d->limit - d->spent : 0;

    for (i = 0; i < 4; i++) {
        quota_out_str(o, names[i]);

        if (d->unit == QUOTA_UNIT_USD) {
            quota_out_money(o, v[i]);

        } else {
            quota_out_int(o, v[i]);
        }
    }
}


/* the amounts twice: SDK-neutral names, then the older *Usd ones */
static void
quota_out_denial_amounts(quota_out_t *o, const quota_denial_t *d)
{
    char  pct[24];

    static const char *const  plain[4] = {
        ",\"limit\":", ",\"spent\":", ",\"requested\":", ",\"remaining\":"
    };

    static const char *const  usd[4] = {
        ",\"limitUsd\":", ",\"currentSpendUsd\":", ",\"estimatedCostUsd\":",
        ",\"remainingUsd\":"
    };

    /* the words of the concurrency refusal's "unit": "requests" */
    quota_out_str(o, d->unit == QUOTA_UNIT_REQ ? ",\"unit\":\"requests\""
                     : d->unit == QUOTA_UNIT_TOK ? ",\"unit\":\"tokens\""
                     : ",\"unit\":\"usd\"");
    quota_out_str(o, ",\"period\":\"");
    quota_out_str(o, quota_period_name(d->period));
    quota_out_bytes(o, "\"", 1);
    quota_out_denial_money(o, d, plain);
    quota_out_str(o, ",\"utilizationPercent\":");
    quota_out_bytes(o, pct, quota_json_percent(pct, d->spent, d->limit));
    quota_out_str(o, ",\"resetsAt\":\"");
    quota_out_time(o, d->resets_at);
    quota_out_str(o, "\",\"retryAfter\":");
    quota_out_int(o, d->retry_after);

    if (d->unit == QUOTA_UNIT_USD) {
        quota_out_denial_money(o, d, usd);
    }
}


static void quota_out_denied_path(quota_out_t *o, const quota_denial_t *d);


size_t
quota_json_denial(char *buf, size_t size, const quota_denial_t *d)
{
    quota_out_t  o = { buf, size, 0 };

    quota_out_envelope_open(&o, "rate_limit_error", quota_denial_code(d),
                            quota_out_denial_message, d);

    quota_out_str(&o, "\"resourceType\":");
    quota_out_string(&o, d->meter, d->meter_len);
    quota_out_denied_path(&o, d);

    quota_out_denial_amounts(&o, d);
    quota_out_envelope_close(&o);

    return o.len;
}


static void
quota_out_concurrency_message(quota_out_t *o, const void *arg)
{
    const quota_denial_t  *d = arg;

    quota_out_escaped(o, d->meter, d->meter_len);
    quota_out_str(o, " concurrency exceeded for ");
    quota_out_denied_scope(o, d);
    quota_out_str(o, ": ");
    quota_out_int(o, d->spent);
    quota_out_str(o, d->spent == 1 ? " request" : " requests");
    quota_out_str(o, " in flight, limit ");
    quota_out_int(o, d->limit);
    quota_out_str(o, "; retry in ");
    quota_out_int(o, d->retry_after);
    quota_out_str(o, d->retry_after == 1 ? " second" : " seconds");
}


/* "scope", "scopeId" and "parentScopes" of the denied scope */
static void
quota_out_denied_path(quota_out_t *o, const quota_denial_t *d)
{
    size_t                    i;
    const quota_scope_ref_t  *s;

    s = &d->path[d->depth - 1];

    quota_out_str(o, ",\"scope\":");
    quota_out_string(o, s->name, s->name_len);
    quota_out_str(o, ",\"scopeId\":");
    quota_out_string(o, s->value, s->value_len);

    /* an array, empty at the top: an object would lose repeated names */
    quota_out_str(o, ",\"parentScopes\":[");

    for (i = 0; i + 1 < d->depth; i++) {
        quota_out_str(o, i ? ",{\"scope\":" : "{\"scope\":");
        quota_out_string(o, d->path[i].name, d->path[i].name_len);
        quota_out_str(o, ",\"scopeId\":");
        quota_out_string(o, d->path[i].value, d->path[i].value_len);
        quota_out_bytes(o, "}", 1);
    }

    quota_out_bytes(o, "]", 1);
}


size_t
quota_json_concurrency(char *buf, size_t size, const quota_denial_t *d)
{
    quota_out_t  o = { buf, size, 0 };

    quota_out_envelope_open(&o, "rate_limit_error", "concurrency_exceeded",
                            quota_out_concurrency_message, d);

    quota_out_str(&o, "\"resourceType\":");
    quota_out_string(&o, d->meter, d->meter_len);
    quota_out_denied_path(&o, d);
    quota_out_str(&o, ",\"unit\":\"requests\",\"limit\":");
    quota_out_int(&o, d->limit);
    quota_out_str(&o, ",\"inFlight\":");
    quota_out_int(&o, d->spent);
    quota_out_str(&o, ",\"retryAfter\":");
    quota_out_int(&o, d->retry_after);
    quota_out_envelope_close(&o);

    return o.len;
}


static void
quota_out_cstring_escaped(quota_out_t *o, const void *arg)
{
    quota_out_escaped(o, arg, strlen(arg));
}


size_t
quota_json_scope_error(char *buf, size_t size, const char *code,
    const char *message, const unsigned char *scope, size_t scope_len)
{
    const char   *type;
    quota_out_t   o = { buf, size, 0 };

    type = strcmp(code, "scope_missing") == 0 ? "permission_error"
                                               : "invalid_request_error";

    quota_out_envelope_open(&o, type, code, quota_out_cstring_escaped,
                            message);
    quota_out_str(&o, "\"scope\":");
    quota_out_string(&o, scope, scope_len);
    quota_out_envelope_close(&o);

    return o.len;
}


/* the 503s: the meter's refusals that say nothing of a scope */

typedef struct {
    const unsigned char  *meter;
    size_t                meter_len;
    int64_t               retry_after;
} quota_meter_arg_t;


static void
quota_out_unavailable_message(quota_out_t *o, const void *arg)
{
    const quota_meter_arg_t  *m = arg;

    quota_out_escaped(o, m->meter, m->meter_len);
    quota_out_str(o, " quota cannot be checked right now; retry shortly");
}


static void
quota_out_load_shed_message(quota_out_t *o, const void *arg)
{
    const quota_meter_arg_t  *m = arg;

    quota_out_escaped(o, m->meter, m->meter_len);
    quota_out_str(o, " request shed: the server is overloaded; retry in ");
    quota_out_int(o, m->retry_after);
    quota_out_str(o, m->retry_after == 1 ? " second" : " seconds");
}


/* details {"resourceType","retryAfter"} */
static size_t
quota_json_meter_refusal(char *buf, size_t size, const char *type,
    const char *code, quota_message_pt message, const quota_meter_arg_t *m)
{
    quota_out_t  o = { buf, size, 0 };

    quota_out_envelope_open(&o, type, code, message, m);
    quota_out_str(&o, "\"resourceType\":");
    quota_out_string(&o, m->meter, m->meter_len);
    quota_out_str(&o, ",\"retryAfter\":");
    quota_out_int(&o, m->retry_after);
    quota_out_envelope_close(&o);

    return o.len;
}


size_t
quota_json_unavailable(char *buf, size_t size, const unsigned char *meter,
    size_t meter_len)
{
    quota_meter_arg_t  m = { meter, meter_len, 1 };

    return quota_json_meter_refusal(buf, size, "api_error",
                                    "quota_unavailable",
                                    quota_out_unavailable_message, &m);
}


size_t
quota_json_load_shed(char *buf, size_t size, const unsigned char *meter,
    size_t meter_len, int64_t retry_after)
{
    quota_meter_arg_t  m = { meter, meter_len, retry_after };

    return quota_json_meter_refusal(buf, size, "overloaded_error",
                                    "load_shed",
                                    quota_out_load_shed_message, &m);
}


size_t
quota_sse_wrap(char *buf, size_t size, const char *json, size_t json_len,
    const char *status)
{
    quota_out_t  o = { buf, size, 0 };

    if (json_len && json[json_len - 1] == '\n') {
        json_len--;
    }

    quota_out_str(&o, "event: error\ndata: ");
    quota_out_bytes(&o, json, json_len);
    quota_out_str(&o, "\n\nevent: done\ndata: {\"status\":\"");
    quota_out_str(&o, status);
    quota_out_str(&o, "\"}\n\n");

    return o.len;
}
