/*
 * Unit tests for ledger request ids (quota_reqid): base32hex digits
 * (edges, the longest value, no leading zeros), the exact text of an id,
 * the counter going up, a long host cut, the bound never passed, and
 * distinct workers or requests never sharing an id: every id parses back
 * into the fields it was made of; and the throttle's draws on one
 * worker's consecutive ids admitting the share asked, as random ones do.
 */

#define UNIT_RNG_SEED  0x27d4eb2f165667c5ULL
#include "unit_helpers.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "quota_reqid.h"
#include "quota_throttle.h"


static void
assert_b32(uint64_t v, const char *want)
{
    size_t         n;
    unsigned char  buf[QUOTA_REQID_B32_MAX + 1];

    memset(buf, 'X', sizeof(buf));
    n = quota_reqid_b32(buf, v);

    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);
    assert_int_equal(buf[n], 'X');
}


static void
test_b32(void **state)
{
    (void) state;

    assert_b32(0, "0");
    assert_b32(9, "9");
    assert_b32(10, "a");
    assert_b32(31, "v");
    assert_b32(32, "10");
    assert_b32(1023, "vv");
    assert_b32(1024, "100");
    assert_b32(UINT32_MAX, "3vvvvvv");
    assert_b32(UINT64_MAX, "fvvvvvvvvvvvv");
    assert_b32(1764590400123ULL, "1jbcshcjr");
}


static void
test_format(void **state)
{
    size_t          n;
    quota_reqid_t   id;
    unsigned char   buf[QUOTA_REQID_MAX];

    (void) state;

    quota_reqid_init(&id, (const unsigned char *) "gw-1.example", 12,
                     1764590400123ULL, 4242, 0x123456789abcdefULL);

    n = quota_reqid_next(&id, buf);
    assert_int_equal(n, strlen("gw-1.example:1jbcshcjr.44i.24qnjff.0"));
    assert_memory_equal(buf, "gw-1.example:1jbcshcjr.44i.24qnjff.0", n);

    n = quota_reqid_next(&id, buf);
    assert_memory_equal(buf, "gw-1.example:1jbcshcjr.44i.24qnjff.1", n);

    id.seq = 1024;
    n = quota_reqid_next(&id, buf);
    assert_int_equal(n, strlen("gw-1.example:1jbcshcjr.44i.24qnjff.100"));
    assert_memory_equal(buf, "gw-1.example:1jbcshcjr.44i.24qnjff.100", n);
    assert_int_equal(id.seq, 1025);
}


static void
test_bounds(void **state)
{
    size_t          n, i;
    quota_reqid_t   id;
    unsigned char   host[400], buf[QUOTA_REQID_MAX + 16];

    (void) state;

    memset(host, 'h', sizeof(host));
    memset(buf, 'X', sizeof(buf));

    /* every field at its longest, the host past its limit */
    quota_reqid_init(&id, host, sizeof(host), UINT64_MAX, UINT64_MAX,
                     UINT64_MAX);
    id.seq = UINT64_MAX;

    n = quota_reqid_next(&id, buf);
    assert_true(n <= QUOTA_REQID_MAX);
    assert_int_equal(buf[n], 'X');

    for (i = 0; i < QUOTA_REQID_HOST_MAX; i++) {
        assert_int_equal(buf[i], 'h');
    }

    assert_int_equal(buf[QUOTA_REQID_HOST_MAX], ':');

    /* the nonce is cut at 32 bits */
    assert_memory_equal(buf + QUOTA_REQID_HOST_MAX,
                        ":fvvvvvvvvvvvv.fvvvvvvvvvvvv.3vvvvvv.fvvvvvvvvvvvv",
                        n - QUOTA_REQID_HOST_MAX);
}


/* the fields an id was made of, read back from its text */
static int
parse(const unsigned char *id, size_t n, size_t *host_len, uint64_t f[4])
{
    size_t    i, k, colon;
    uint64_t  v;
    int       c, digits;

    colon = n;

    for (i = 0; i < n; i++) {
        if (id[i] == ':') {
            colon = i;
        }
    }

    if (colon == n) {
        return -1;
    }

    *host_len = colon;
    k = 0;
    v = 0;
    digits = 0;

    for (i = colon + 1; i <= n; i++) {
        if (i == n || id[i] == '.') {
            if (digits == 0 || k == 4) {
                return -1;
            }

            f[k++] = v;
            v = 0;
            digits = 0;
            continue;
        }

        c = id[i];

        if (digits == 0 && c == '0' && i + 1 < n && id[i + 1] != '.') {
            return -1;      /* a leading zero: two texts for one value */
        }

        v = v * 32 + (uint64_t) (c <= '9' ? c - '0' : c - 'a' + 10);
        digits++;
    }

    return k == 4 ? 0 : -1;
}


static void
test_distinct(void **state)
{
    size_t          n, i, host_len;
    uint64_t        start, pid, nonce, f[4];
    quota_reqid_t   id;
    unsigned char   buf[QUOTA_REQID_MAX];

    static const char  *hosts[] = { "a", "gw-1", "gw-1.example", "x.y.z" };

    (void) state;

    /* values of every size, small ones often: they collide most easily */
    for (i = 0; i < 20000; i++) {
        start = rng() >> (rng() % 64);
        pid = rng() >> (rng() % 64);
        nonce = rng() >> (rng() % 64);

        quota_reqid_init(&id, (const unsigned char *) hosts[i % 4],
                         strlen(hosts[i % 4]), start, pid, nonce);
        id.seq = rng() >> (rng() % 64);

        n = quota_reqid_next(&id, buf);

        assert_int_equal(parse(buf, n, &host_len, f), 0);
        assert_int_equal(host_len, strlen(hosts[i % 4]));
        assert_memory_equal(buf, hosts[i % 4], host_len);
        assert_true(f[0] == start);
        assert_true(f[1] == pid);
        assert_true(f[2] == (nonce & 0xffffffff));
        assert_true(f[3] == id.seq - 1);
    }
}


/*
 * quota_throttle admits a request when the hash of its id falls below
 * the factor.  Ids differ only in their counter from one request to the
 * next; the shares admitted must still be those of independent draws:
 * over 200,000 ids within 0.5 % of the factor (the standard deviation of
 * a random share is 0.1 %), and of every 400 in a row (as t/018 sends)
 * within 140..260 at 0.5.
 */
static void
test_throttle_draws(void **state)
{
    size_t          n, i, k, admitted, window;
    int64_t         factor;
    quota_reqid_t   id;
    unsigned char   buf[QUOTA_REQID_MAX];

    static const int64_t  factors[] = { 100000, 500000, 900000 };

    (void) state;

    for (k = 0; k < 3; k++) {
        factor = factors[k];

        quota_reqid_init(&id, (const unsigned char *) "gw-1", 4,
                         1764590400123ULL + k, 4242, rng());

        admitted = 0;
        window = 0;

        for (i = 0; i < 200000; i++) {
            n = quota_reqid_next(&id, buf);

            if (quota_throttle_admit(quota_throttle_hash(buf, n), factor)) {
                admitted++;
                window++;
            }

            if ((i + 1) % 400 == 0) {
                if (factor == 500000) {
                    assert_in_range(window, 140, 260);
                }

                window = 0;
            }
        }

        assert_in_range(admitted, (size_t) (factor * 2 / 10) - 1000,
                        (size_t) (factor * 2 / 10) + 1000);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b32),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_distinct),
        cmocka_unit_test(test_throttle_draws),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
