/*
 * Unit tests for requests in flight (quota_concurrency): the RESP of a
 * lease's four commands (exact bytes, the end of each, the length equal
 * to what is written and nothing past it), the decision on what the sets
 * held (the outermost scope over its N refuses, N itself admits), the
 * members' names (distinct for distinct pids, starts and counters; a long
 * host cut) and the concurrency_exceeded envelope and its snprintf
 * contract.
 */

#define UNIT_RNG_SEED  0x5bd1e9955bd1e995ULL
#include "unit_helpers.h"
#include "json_helpers.h"

#include "quota_redis_cmd.h"
#include "quota_concurrency.h"


static quota_redis_lease_t
lease(const char *key, const char *member, int64_t now, int64_t lease_ms)
{
    quota_redis_lease_t  l;

    l.key.data = (const unsigned char *) key;
    l.key.len = strlen(key);
    l.member.data = (const unsigned char *) member;
    l.member.len = strlen(member);
    l.now_ms = now;
    l.expire_ms = now + lease_ms;
    l.ttl_ms = lease_ms;

    return l;
}


static void
test_lease_resp(void **state)
{
    size_t                len;
    unsigned char         buf[512], *end, *ends[QUOTA_REDIS_LEASE_CMDS];
    quota_redis_lease_t   l;

    static const char  want[] =
        "*4\r\n$16\r\nZREMRANGEBYSCORE\r\n$7\r\nq:{t=a}\r\n$4\r\n-inf\r\n"
        "$13\r\n1764590000000\r\n"
        "*4\r\n$4\r\nZADD\r\n$7\r\nq:{t=a}\r\n$13\r\n1764590600000\r\n"
        "$8\r\nh:12:3:4\r\n"
        "*2\r\n$5\r\nZCARD\r\n$7\r\nq:{t=a}\r\n"
        "*3\r\n$7\r\nPEXPIRE\r\n$7\r\nq:{t=a}\r\n$6\r\n600000\r\n";

    (void) state;

    l = lease("q:{t=a}", "h:12:3:4", 1764590000000LL, 600000);

    len = quota_redis_cmd_lease_len(&l);
    assert_int_equal(len, sizeof(want) - 1);

    memset(buf, CANARY, sizeof(buf));
    end = quota_redis_cmd_lease(buf, &l, ends);

    assert_int_equal(end - buf, len);
    assert_memory_equal(buf, want, len);
    assert_int_equal(buf[len], CANARY);
    assert_ptr_equal(ends[3], end);

    /* each end is where the next command starts */
    assert_memory_equal(ends[0], "*4\r\n$4\r\nZADD", 12);
    assert_memory_equal(ends[1], "*2\r\n$5\r\nZCARD", 13);
    assert_memory_equal(ends[2], "*3\r\n$7\r\nPEXPIRE", 15);
}


static void
test_lease_resp_binary(void **state)
{
    size_t                i, len;
    unsigned char         buf[2048], *end, *ends[QUOTA_REDIS_LEASE_CMDS];
    char                  key[300];
    quota_redis_lease_t   l;

    (void) state;

    for (i = 0; i < 200; i++) {
        memset(key, 'k', sizeof(key));
        key[rng() % 10] = '\r';
        key[10 + rng() % 10] = '\0';

        l.key.data = (const unsigned char *) key;
        l.key.len = 20 + rng() % 250;
        l.member.data = (const unsigned char *) "";
        l.member.len = 0;
        l.now_ms = (int64_t) (rng() >> 1);
        l.expire_ms = -(int64_t) (rng() >> 2);
        l.ttl_ms = (int64_t) (rng() % 100000);

        len = quota_redis_cmd_lease_len(&l);

        memset(buf, CANARY, sizeof(buf));
        end = quota_redis_cmd_lease(buf, &l, ends);

        assert_int_equal(end - buf, len);
        assert_int_equal(buf[len], CANARY);
    }
}


static void
test_decision(void **state)
{
    int64_t  held[3], limit[3] = { 2, 1, 5 };

    (void) state;

    held[0] = 2; held[1] = 1; held[2] = 5;
    assert_int_equal(quota_concurrency_refusing(held, limit, 3), 3);

    held[0] = 1; held[1] = 2; held[2] = 6;
    assert_int_equal(quota_concurrency_refusing(held, limit, 3), 1);

    /* the outermost of two full scopes */
    held[0] = 3;
    assert_int_equal(quota_concurrency_refusing(held, limit, 3), 0);

    assert_int_equal(quota_concurrency_refusing(held, limit, 0), 0);
}


static void
test_member(void **state)
{
    size_t         n, m;
    char           a[QUOTA_CONCURRENCY_MEMBER_MAX], b[QUOTA_CONCURRENCY_MEMBER_MAX];
    unsigned char  host[400];

    (void) state;

    n = quota_concurrency_member(a, (const unsigned char *) "gw1", 3, 4242,
                                 1764590000123LL, 7);
    assert_int_equal(n, strlen("gw1:4242:1764590000123:7"));
    assert_memory_equal(a, "gw1:4242:1764590000123:7", n);

    /* another pid, start or counter: another member */
    m = quota_concurrency_member(b, (const unsigned char *) "gw1", 3, 4243,
                                 1764590000123LL, 7);
    assert_false(m == n && memcmp(a, b, n) == 0);
    m = quota_concurrency_member(b, (const unsigned char *) "gw1", 3, 4242,
                                 1764590000124LL, 7);
    assert_false(m == n && memcmp(a, b, n) == 0);
    m = quota_concurrency_member(b, (const unsigned char *) "gw1", 3, 4242,
                                 1764590000123LL, 8);
    assert_false(m == n && memcmp(a, b, n) == 0);

    /* the longest: within the bound */
    memset(host, 'h', sizeof(host));
    n = quota_concurrency_member(a, host, sizeof(host), INT64_MIN, INT64_MIN,
                                 UINT64_MAX);
    assert_true(n <= QUOTA_CONCURRENCY_MEMBER_MAX);
}


static quota_scope_ref_t  path[2] = {
    { U("tenant"), 6, U("acme"), 4 },
    { U("user"), 4, U("b\"ob"), 4 }
};


static size_t
w_concurrency(char *buf, size_t size, const void *arg)
{
    return quota_json_concurrency(buf, size, arg);
}


static void
test_envelope(void **state)
{
    char             buf[2048];
    size_t           n, len, size;
    json_t          *j, *d, *p;
    quota_denial_t   den;

    (void) state;

    memset(&den, 0, sizeof(den));
    den.meter = U("llm");
    den.meter_len = 3;
    den.path = path;
    den.depth = 2;
    den.limit = 3;
    den.spent = 3;
    den.retry_after = 1;

    n = quota_json_concurrency(buf, sizeof(buf), &den);
    assert_true(n < sizeof(buf));

    j = load(buf, n, 0);
    d = envelope(j, "rate_limit_error", "concurrency_exceeded");

    check_str(d, "resourceType", "llm");
    check_str(d, "scope", "user");
    check_str(d, "scopeId", "b\"ob");
    check_str(d, "unit", "requests");
    assert_int_equal(json_integer_value(get(d, "limit")), 3);
    assert_int_equal(json_integer_value(get(d, "inFlight")), 3);
    assert_int_equal(json_integer_value(get(d, "retryAfter")), 1);

    p = get(d, "parentScopes");
    assert_int_equal(json_array_size(p), 1);
    check_str(json_array_get(p, 0), "scopeId", "acme");

    assert_string_equal(json_string_value(get(j, "message")),
                        "llm concurrency exceeded for user b\"ob of tenant "
                        "acme: 3 requests in flight, limit 3; retry in 1 "
                        "second");
    json_decref(j);

    /* the snprintf contract */
    len = w_concurrency(NULL, 0, &den);
    assert_int_equal(len, n);

    for (size = 0; size <= len + 4; size++) {
        memset(buf, CANARY, sizeof(buf));
        assert_int_equal(w_concurrency(buf, size, &den), len);
        assert_int_equal((unsigned char) buf[size], CANARY);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_lease_resp),
        cmocka_unit_test(test_lease_resp_binary),
        cmocka_unit_test(test_decision),
        cmocka_unit_test(test_member),
        cmocka_unit_test(test_envelope),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
