/*
 * Unit tests for src/quota_sliding.c: the weighted count, rounding up and
 * saturating; the boundary burst a fixed window lets through and a
 * sliding one refuses; the wait until a request fits, against the count
 * itself at random; and the approximation's bound.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#define UNIT_RNG_SEED  0x6a09e667f3bcc909ULL
#include "unit_helpers.h"

#include "quota_sliding.h"


#define MINUTE  60000
#define HOUR    3600000


static void
test_count(void **state)
{
    (void) state;

    assert_int_equal(quota_sliding_count(100, 0, MINUTE, 0), 100);
    assert_int_equal(quota_sliding_count(100, 7, MINUTE, 30000), 57);
    assert_int_equal(quota_sliding_count(100, 0, MINUTE, 59999), 1);
    assert_int_equal(quota_sliding_count(0, 5, MINUTE, 123), 5);
    assert_int_equal(quota_sliding_count(100, 5, MINUTE, MINUTE), 5);

    /* rounded up: never less than what may have been spent */
    assert_int_equal(quota_sliding_count(1, 0, MINUTE, 1), 1);
    assert_int_equal(quota_sliding_count(3, 0, HOUR, 1200000), 2);

    /* no overflow, however big */
    assert_int_equal(quota_sliding_count(INT64_MAX, 0, HOUR, 0), INT64_MAX);
    assert_int_equal(quota_sliding_count(INT64_MAX, INT64_MAX, HOUR, 1),
                     INT64_MAX);
    assert_int_equal(quota_sliding_count(INT64_MAX, 0, HOUR, HOUR / 2),
                     INT64_MAX / 2 + 1);
}


/*
 * A client spends the whole limit in the last second of a window: a
 * fixed window lets it spend it again in the first second of the next.
 */
static void
test_boundary_burst(void **state)
{
    (void) state;

    /* 10 requests in the last second, then one more just after it */
    assert_true(quota_sliding_count(10, 0, MINUTE, 500) + 1 > 10);

    /* 6 s in, a tenth of the previous window has slid out: one more */
    assert_int_equal(quota_sliding_wait(10, 10, 0, 1, MINUTE, 0), 6000);
    assert_true(quota_sliding_count(10, 0, MINUTE, 6000) + 1 <= 10);
    assert_true(quota_sliding_count(10, 0, MINUTE, 5999) + 1 > 10);
}


static void
test_wait(void **state)
{
    (void) state;

    assert_int_equal(quota_sliding_wait(10, 0, 0, 10, MINUTE, 0), 0);
    assert_int_equal(quota_sliding_wait(10, 0, 0, 11, MINUTE, 0), -1);

    /* the current window is full: its end, then a tenth of it */
    assert_int_equal(quota_sliding_wait(10, 0, 10, 1, MINUTE, 30000),
                     30000 + 6000);

    /* a limit of 0 admits only nothing */
    assert_int_equal(quota_sliding_wait(0, 0, 0, 0, MINUTE, 0), 0);
    assert_int_equal(quota_sliding_wait(0, 0, 0, 1, MINUTE, 0), -1);
}


/* the count t ms from now, nothing spent meanwhile */
static int64_t
count_at(int64_t prev, int64_t cur, int64_t w, int64_t elapsed, int64_t t)
{
    int64_t  e;

    e = elapsed + t;

    if (e < w) {
        return quota_sliding_count(prev, cur, w, e);
    }

    if (e < 2 * w) {
        return quota_sliding_count(cur, 0, w, e - w);
    }

    return 0;
}


static void
test_wait_random(void **state)
{
    int      i;
    int64_t  w, limit, prev, cur, amount, elapsed, t, c;

    (void) state;

    for (i = 0; i < 200000; i++) {
        w = (rng() & 1) ? MINUTE : HOUR;
        limit = (int64_t) (rng() % 1000);
        prev = (int64_t) (rng() % 1500);
        cur = (int64_t) (rng() % 1500);
        amount = (int64_t) (rng() % 200);
        elapsed = (int64_t) (rng() % (uint64_t) w);

        c = quota_sliding_count(prev, cur, w, elapsed);

        /* the bound: between what this window and both windows hold */
        assert_true(c >= cur && c <= cur + prev);

        t = quota_sliding_wait(limit, prev, cur, amount, w, elapsed);

        if (amount > limit) {
            assert_int_equal(t, -1);
            continue;
        }

        /* at t it fits, a millisecond earlier it does not */
        assert_true(t >= 0 && t <= 2 * w);
        assert_true(count_at(prev, cur, w, elapsed, t) <= limit - amount);

        if (t > 0) {
            assert_true(count_at(prev, cur, w, elapsed, t - 1)
                        > limit - amount);
        }
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_boundary_burst),
        cmocka_unit_test(test_wait),
        cmocka_unit_test(test_wait_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
