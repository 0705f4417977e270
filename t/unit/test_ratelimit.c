/*
 * Unit tests for src/quota_ratelimit.c, the RateLimit-Policy and
 * RateLimit header values: the PRODUCT example, one item and several,
 * sf-string escaping of quotes and backslashes, bytes an sf-string cannot
 * hold, negative and huge amounts, which limit RateLimit names, and the
 * snprintf contract.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quota_ratelimit.h"


#define CANARY  0x5c


static quota_rl_item_t
item(const char *scope, quota_period_e period, int64_t q, int64_t w,
    int64_t r, int64_t t)
{
    quota_rl_item_t  it;

    it.scope = (const unsigned char *) scope;
    it.scope_len = strlen(scope);
    it.period = period;
    it.quota = q;
    it.window = w;
    it.remaining = r;
    it.reset = t;
    it.unit = QUOTA_UNIT_USD;
    it.cost = 1;

    return it;
}



typedef size_t (*rl_writer_pt)(char *buf, size_t size,
    const quota_rl_item_t *items, size_t n);


/* the whole value, checked against want and against every short buffer */
static void
check_value(rl_writer_pt w, const quota_rl_item_t *items, size_t n,
    const char *want)
{
    char    buf[512];
    size_t  len, size;

    len = w(NULL, 0, items, n);
    assert_int_equal(len, strlen(want));

    for (size = 0; size <= len + 2; size++) {
        memset(buf, CANARY, sizeof(buf));
        assert_int_equal(w(buf, size, items, n), len);
        assert_memory_equal(buf, want, size < len ? size : len);
        assert_int_equal((unsigned char) buf[size < len ? size : len],
                         CANARY);
    }
}


static void
test_product_example(void **state)
{
    quota_rl_item_t  items[2];

    (void) state;

    items[0] = item("tenant", QUOTA_PERIOD_DAY, 50000000, 86400, 3000000,
                    30497);
    items[1] = item("user", QUOTA_PERIOD_DAY, 5000000, 86400, 1500000,
                    30497);

    check_value(quota_rl_policy, items, 2,
                "\"tenant-day\";q=50000000;w=86400, "
                "\"user-day\";q=5000000;w=86400");
    check_value(quota_rl_state, items, 2, "\"user-day\";r=1500000;t=30497");
}


static void
test_one_item_and_every_period(void **state)
{
    quota_rl_item_t  items[5];

    (void) state;

    items[0] = item("tenant", QUOTA_PERIOD_MINUTE, 1000, 60, 10, 5);
    check_value(quota_rl_policy, items, 1, "\"tenant-minute\";q=1000;w=60");
    check_value(quota_rl_state, items, 1, "\"tenant-minute\";r=10;t=5");

    items[1] = item("tenant", QUOTA_PERIOD_HOUR, 2000, 3600, 20, 50);
    items[2] = item("team", QUOTA_PERIOD_WEEK, 3000, 604800, 30, 500);
    items[3] = item("user", QUOTA_PERIOD_MONTH, 4000, 2592000, 40, 5000);
    items[4] = item("key", QUOTA_PERIOD_DAY, 5000, 86400, 50, 50000);

    check_value(quota_rl_policy, items, 5,
                "\"tenant-minute\";q=1000;w=60, "
                "\"tenant-hour\";q=2000;w=3600, "
                "\"team-week\";q=3000;w=604800, "
                "\"user-month\";q=4000;w=2592000, "
                "\"key-day\";q=5000;w=86400");
    check_value(quota_rl_state, items, 5, "\"tenant-minute\";r=10;t=5");
}


static void
test_names_are_escaped_sf_strings(void **state)
{
    quota_rl_item_t  items[3];

    (void) state;

    items[0] = item("a\"b", QUOTA_PERIOD_DAY, 1, 86400, 1, 1);
    items[1] = item("c\\d", QUOTA_PERIOD_DAY, 1, 86400, 1, 1);
    items[2] = item("\x01\xc3\xa9\x7f", QUOTA_PERIOD_DAY, 1, 86400, 1, 1);

    check_value(quota_rl_policy, items, 3,
                "\"a\\\"b-day\";q=1;w=86400, \"c\\\\d-day\";q=1;w=86400, "
                "\"????" "-day\";q=1;w=86400");
    check_value(quota_rl_state, items + 1, 1, "\"c\\\\d-day\";r=1;t=1");
}


static void
test_amounts_never_negative_nor_too_long(void **state)
{
    quota_rl_item_t  items[2];

    (void) state;

    /* an over-spent limit has nothing left, not a negative amount */
    items[0] = item("user", QUOTA_PERIOD_DAY, 5000000, 86400, -250000, 7);
    check_value(quota_rl_state, items, 1, "\"user-day\";r=0;t=7");

    /* an sf-integer has at most 15 digits */
    items[0] = item("user", QUOTA_PERIOD_DAY, INT64_MAX, 86400, INT64_MAX,
                    7);
    check_value(quota_rl_policy, items, 1,
                "\"user-day\";q=999999999999999;w=86400");
    check_value(quota_rl_state, items, 1,
                "\"user-day\";r=999999999999999;t=7");
}


static void
test_state_names_the_least_left(void **state)
{
    quota_rl_item_t  items[3];

    (void) state;

    items[0] = item("tenant", QUOTA_PERIOD_DAY, 100, 86400, 40, 100);
    items[1] = item("tenant", QUOTA_PERIOD_MONTH, 1000, 2592000, 30, 9000);
    items[2] = item("user", QUOTA_PERIOD_DAY, 50, 86400, 45, 100);

    assert_int_equal(quota_rl_least(items, 3), 1);
    check_value(quota_rl_state, items, 3, "\"tenant-month\";r=30;t=9000");

    /* two over-spent limits: the later reset is the one that binds */
    items[0].remaining = -5;
    items[1].remaining = -1;
    items[2].remaining = 0;
    items[2].reset = 20000;
    assert_int_equal(quota_rl_least(items, 3), 2);

    items[2].reset = 10;
    assert_int_equal(quota_rl_least(items, 3), 1);
}


/*
 * Limits of three units: named with their unit, and the one with the
 * fewest requests like this one left is the state's
 */
static void
test_units_named_and_compared_by_requests_left(void **state)
{
    quota_rl_item_t  items[3];

    (void) state;

    /* $1.50 left at $0.50 a request: 3; 2 requests; 9,000 tokens: 9 */
    items[0] = item("tenant", QUOTA_PERIOD_DAY, 50000000, 86400, 1500000,
                    100);
    items[0].cost = 500000;
    items[1] = item("user", QUOTA_PERIOD_MINUTE, 60, 60, 2, 20);
    items[1].unit = QUOTA_UNIT_REQ;
    items[2] = item("user", QUOTA_PERIOD_DAY, 2000000, 86400, 9000, 100);
    items[2].unit = QUOTA_UNIT_TOK;
    items[2].cost = 1000;

    check_value(quota_rl_policy, items, 3,
                "\"tenant-day\";q=50000000;w=86400, "
                "\"user-minute-req\";q=60;w=60, "
                "\"user-day-tok\";q=2000000;w=86400");
    check_value(quota_rl_state, items, 3, "\"user-minute-req\";r=2;t=20");

    /* exactly, with no overflow at the largest amounts */
    assert_int_equal(quota_rl_fewer_left(2, 1, 1500000, 500000), -1);
    assert_int_equal(quota_rl_fewer_left(3, 1, 1500000, 500000), 0);
    assert_int_equal(quota_rl_fewer_left(-5, 1, 0, 7), 0);
    assert_int_equal(quota_rl_fewer_left(INT64_MAX, INT64_MAX,
                                         INT64_MAX - 1, INT64_MAX), 1);

    /* no cost: counted as 1 of the unit, so plenty left */
    items[1].remaining = 5;
    items[2].cost = 0;
    check_value(quota_rl_state, items, 3, "\"tenant-day\";r=1500000;t=100");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_product_example),
        cmocka_unit_test(test_one_item_and_every_period),
        cmocka_unit_test(test_names_are_escaped_sf_strings),
        cmocka_unit_test(test_amounts_never_negative_nor_too_long),
        cmocka_unit_test(test_state_names_the_least_left),
        cmocka_unit_test(test_units_named_and_compared_by_requests_left),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
