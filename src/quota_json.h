/*
 * The bodies of the module's own responses: the 429 that tells a tenant
 * what was spent, the limit and when it resets, the 403/400 for a bad
 * scope value, the 503 when the quota store is out of reach or the host
 * sheds load, and the SSE framing of any of them for streaming clients.  Each is the one
 * envelope the OpenAI and Anthropic SDKs both parse: {"type":"error",
 * "message", "error":{"type","code","message","param":null,"details"}}.
 * Pure C, no nginx.
 *
 * Every writer works like snprintf: it returns the length the whole body
 * needs and writes no more than size bytes, so a caller sizes the buffer
 * with a first call on (NULL, 0).
 */

#ifndef QUOTA_JSON_H
#define QUOTA_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "quota_period.h"
#include "quota_unit.h"


/*
 * A bounded writer: bytes past size are counted, not written, so len is
 * always the length the whole output needs.
 */
typedef struct {
    char                 *p;
    size_t                size;
    size_t                len;
} quota_out_t;


typedef struct {
    const unsigned char  *name;
    size_t                name_len;
    const unsigned char  *value;
    size_t                value_len;
} quota_scope_ref_t;


typedef struct {
    const unsigned char      *meter;
    size_t                    meter_len;

    /* path[depth - 1] is the scope that was denied, the rest its parents */
    const quota_scope_ref_t  *path;
    size_t                    depth;

    int64_t                   limit;        /* in unit */
    int64_t                   burst;        /* over it, this window: 0 */
    int64_t                   spent;        /* before this request */
    int64_t                   estimate;     /* this request */
    quota_period_e            period;
    int64_t                   retry_after;  /* seconds */
    int64_t                   resets_at;    /* Unix time of the reset */
    int64_t                   now;          /* Unix time of the refusal */
    quota_unit_e              unit;         /* of limit, spent, estimate */
} quota_denial_t;


size_t quota_json_denial(char *buf, size_t size, const quota_denial_t *d);

/*
 * "estimate_exceeds_limit" when the estimate alone is over the limit (and
 * its burst), so that no reset lets the request through, else
 * "quota_exceeded"
 */
const char *quota_denial_code(const quota_denial_t *d);

/*
 * 1 when a client should fail at once: the reset is more than a minute
 * away, or no reset helps.  The reset, not retry_after: its spread must
 * not make a minute limit look like a long wait.
 */
int quota_denial_retry_useless(const quota_denial_t *d);

/*
 * code "concurrency_exceeded", a rate_limit_error, for a request that
 * would take a scope past its requests in flight (quota_concurrency):
 * d->limit is N, d->spent the requests in flight besides this one,
 * d->retry_after the seconds to wait; details {"resourceType", "scope",
 * "scopeId", "parentScopes", "unit":"requests", "limit", "inFlight",
 * "retryAfter"}
 */
size_t quota_json_concurrency(char *buf, size_t size,
    const quota_denial_t *d);

/*
 * code "scope_missing" (a permission_error, for 403) or "scope_invalid"
 * (an invalid_request_error, for 400); details {"scope":scope}
 */
size_t quota_json_scope_error(char *buf, size_t size, const char *code,
    const char *message, const unsigned char *scope, size_t scope_len);

/* code "quota_unavailable", an api_error, for fail-closed requests */
size_t quota_json_unavailable(char *buf, size_t size,
    const unsigned char *meter, size_t meter_len);

/*
 * code "load_shed", an overloaded_error, for requests the host is too
 * busy to take (quota_throttle); details {"resourceType","retryAfter"}
 */
size_t quota_json_load_shed(char *buf, size_t size,
    const unsigned char *meter, size_t meter_len, int64_t retry_after);

/*
 * "event: error\ndata: <json>\n\nevent: done\ndata: {"status":..}\n\n";
 * json must not hold a newline (the writers above end theirs with one,
 * which is dropped here)
 */
size_t quota_sse_wrap(char *buf, size_t size, const char *json,
    size_t json_len, const char *status);

/* a JSON string literal of any bytes: invalid UTF-8 becomes U+FFFD */
size_t quota_json_string(char *buf, size_t size, const unsigned char *s,
    size_t len);

/*
 * Inline: most of a ledger row or a 429 body is short literals, and
 * inlined, their strlen and memcpy fold into a few moves.
 */

static inline void
quota_out_bytes(quota_out_t *o, const void *s, size_t n)
{
    if (o->len < o->size) {
        memcpy(o->p + o->len, s,
               o->size - o->len < n ? o->size - o->len : n);
    }

    o->len += n;
}


static inline void
quota_out_str(quota_out_t *o, const char *s)
{
    quota_out_bytes(o, s, strlen(s));
}


void quota_out_int(quota_out_t *o, int64_t v);
void quota_out_money(quota_out_t *o, int64_t micros);

/* Unix time t as ISO 8601 UTC, "2026-12-02T00:00:00Z" */
void quota_out_time(quota_out_t *o, int64_t t);

/* a JSON string literal, quotes included */
void quota_out_string(quota_out_t *o, const unsigned char *s, size_t len);

/* length of the valid UTF-8 sequence that starts s, 0 if none does */
size_t quota_utf8_len(const unsigned char *s, size_t len);

/* per cent with one decimal, "97.0", of spent against limit */
size_t quota_json_percent(char *buf, int64_t spent, int64_t limit);

#endif /* QUOTA_JSON_H */
