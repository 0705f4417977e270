/*
 * Helpers shared by the unit tests of src/quota_row.c (test_row_*.c):
 * the includes, U(), the canary byte, the seeded xorshift64* generator,
 * scope(), the contract example row (docs/ledger-contract.md) and its
 * fields (its limits and alert thresholds), row_json() and display() sized by a (NULL, 0) call, load() on
 * top of jansson, check_fields() and random_value().  Each test binary
 * compiles its own copy.
 */

#ifndef ROW_HELPERS_H
#define ROW_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "quota_row.h"


#define U(s)       ((const unsigned char *) (s))
#define CANARY     0x5c
#define NFIELDS    18


static const char  *contract_fields[NFIELDS] = {
    "request_id", "ts_ms", "host", "resource_type", "scope_names",
    "scope_ids", "decision", "estimated_micros", "actual_micros",
    "upstream_status", "http_status", "model", "prompt_tokens",
    "completion_tokens", "cached_tokens", "epoch", "limits", "alerts"
};


#define UNIT_RNG_SEED  0x452821e638d01377ULL
#include "unit_helpers.h"


static inline quota_scope_ref_t
scope(const char *name, const void *value, size_t value_len)
{
    quota_scope_ref_t  s;

    s.name = U(name);
    s.name_len = strlen(name);
    s.value = value;
    s.value_len = value_len;

    return s;
}


static const quota_row_limit_t  contract_limits[] = {
    { 1, QUOTA_PERIOD_DAY, 50000000, -1, QUOTA_UNIT_USD, NULL },
    { 2, QUOTA_PERIOD_DAY, 5000000, -1, QUOTA_UNIT_USD, NULL },
    { 1, QUOTA_PERIOD_MONTH, 1000000000, -1, QUOTA_UNIT_USD, NULL },
};


static const uint16_t  contract_alerts[] = { 80, 90, 100 };


/* the contract example; scopes are the caller's (tenant acme, user bob) */
static inline quota_row_t
contract(const quota_scope_ref_t *scopes, size_t nscopes)
{
    quota_row_t  r;

    memset(&r, 0, sizeof(r));

    r.request_id = U("web-1:7f3a9c0e6b2d4f8a9e1c3b5d7f9a1c3e");
    r.request_id_len = 38;
    r.host = U("web-1");
    r.host_len = 5;
    r.meter = U("llm");
    r.meter_len = 3;
    r.ts_ms = 1763911800123LL;
    r.scopes = scopes;
    r.nscopes = nscopes;
    r.decision = "allowed";
    r.estimated = 50000;
    r.actual = 42000;
    r.upstream_status = 200;
    r.http_status = 200;
    r.model = NULL;
    r.model_len = 0;
    r.prompt_tokens = -1;
    r.completion_tokens = -1;
    r.cached_tokens = -1;
    r.tokens = -1;
    r.limits = contract_limits;
    r.nlimits = 3;
    r.alerts = contract_alerts;
    r.nalerts = 3;

    return r;
}


/* the row's JSON in a fresh buffer, sized with a first (NULL, 0) call */
static inline char *
row_json(const quota_row_t *r, size_t *n)
{
    char    *buf;
    size_t   len;

    len = quota_row_json(NULL, 0, r);
    assert_true(len > 0);
    assert_true(len <= quota_row_json_max(r));

    buf = malloc(len + 1);
    assert_non_null(buf);
    memset(buf, CANARY, len + 1);

    assert_int_equal(quota_row_json(buf, len, r), len);
    assert_int_equal((unsigned char) buf[len], CANARY);

    *n = len;
    return buf;
}


static inline char *
display(const unsigned char *s, size_t len, size_t *n)
{
    char    *buf;
    size_t   need;

    need = quota_display(NULL, 0, s, len);

    /* the bound the live-limit lookup sizes its buffer by */
    assert_true(need <= 3 * len);

    buf = malloc(need + 1);
    assert_non_null(buf);
    memset(buf, CANARY, need + 1);

    assert_int_equal(quota_display(buf, need, s, len), need);
    assert_int_equal((unsigned char) buf[need], CANARY);

    *n = need;
    return buf;
}


static inline json_t *
load(const char *buf, size_t len)
{
    json_t        *j;
    json_error_t   err;

    j = json_loadb(buf, len, 0, &err);

    if (j == NULL) {
        print_error("json: %s at %d: %.*s\n", err.text, err.position,
                    (int) len, buf);
    }

    assert_non_null(j);

    return j;
}


/* exactly the contract's fields, no other */
static inline void
check_fields(json_t *o)
{
    size_t   i;

    assert_true(json_is_object(o));
    assert_int_equal(json_object_size(o), NFIELDS);

    for (i = 0; i < NFIELDS; i++) {
        assert_non_null(json_object_get(o, contract_fields[i]));
    }
}


/* random bytes, biased to what display form treats specially */
static inline size_t
random_value(unsigned char *p, size_t max)
{
    static const unsigned char  special[] = {
        '%', '/', '=', '2', '5', 'F', '3', 'D', 'a', '"', '\\', ' ',
        0x00, 0x01, 0x1f, 0x7f, 0x80, 0xbf, 0xc2, 0xc3, 0xa9, 0xe2, 0x82,
        0xac, 0xed, 0xa0, 0xf0, 0x9f, 0x98, 0xf4, 0x90, 0xff
    };

    size_t  i, n;

    n = (size_t) (rng() % (max + 1));

    for (i = 0; i < n; i++) {
        if (rng() % 2) {
            p[i] = special[rng() % sizeof(special)];

        } else {
            p[i] = (unsigned char) (rng() >> 40);
        }
    }

    return n;
}


#endif /* ROW_HELPERS_H */
