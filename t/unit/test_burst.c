/*
 * Unit tests for src/quota_burst.c: what a window owes the next, the
 * spend a window starts with, carried over a run of windows as the gate
 * admits requests, and saturation at the extremes.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#define UNIT_RNG_SEED  0x3c6ef372fe94f82bULL
#include "unit_helpers.h"

#include "quota_burst.h"


static void
test_owed(void **state)
{
    (void) state;

    assert_int_equal(quota_burst_owed(4000000, 3000000), 1000000);
    assert_int_equal(quota_burst_owed(3000000, 3000000), 0);
    assert_int_equal(quota_burst_owed(0, 3000000), 0);
    assert_int_equal(quota_burst_owed(5, 0), 5);

    assert_int_equal(quota_burst_spent(0, 4000000, 3000000), 1000000);
    assert_int_equal(quota_burst_spent(2000000, 4000000, 3000000), 3000000);
    assert_int_equal(quota_burst_spent(2000000, 1000000, 3000000), 2000000);

    assert_int_equal(quota_burst_ceiling(3000000, 2000000), 5000000);
    assert_int_equal(quota_burst_ceiling(3000000, 0), 3000000);
}


static void
test_saturates(void **state)
{
    (void) state;

    assert_true(quota_burst_spent(INT64_MAX - 1, INT64_MAX, 0) == INT64_MAX);
    assert_true(quota_burst_spent(INT64_MAX, 10, 0) == INT64_MAX);
    assert_true(quota_burst_ceiling(INT64_MAX, 1) == INT64_MAX);
    assert_true(quota_burst_ceiling(INT64_MAX - 1, 1) == INT64_MAX);
}


/*
 * Windows in a row, a client asking for unit-sized requests as fast as
 * it may: each window admits while spent + 1 fits under limit + burst.
 * A window that bursts lets the next one take only what is left after
 * the debt: over any two windows in a row no more than 2 * limit + burst
 * goes through, so a burst is paid back within the next window.
 */
static void
test_carried_over_windows(void **state)
{
    int64_t   limit, burst, prev, counter, spent, total, w;
    unsigned  i, round;

    (void) state;

    for (round = 0; round < 200; round++) {
        limit = (int64_t) (rng() % 50) + 1;
        burst = (int64_t) (rng() % 30);
        prev = 0;
        total = 0;

        for (w = 0; w < 40; w++) {
            counter = 0;

            /* the client asks for up to twice what could ever fit */
            for (i = 0; i < 2 * (limit + burst) + 2; i++) {
                spent = quota_burst_spent(counter + 1, prev, limit);

                if (spent > quota_burst_ceiling(limit, burst)) {
                    continue;
                }

                counter++;
            }

            /* the debt is paid out of this window's own room */
            assert_true(counter + quota_burst_owed(prev, limit)
                        <= limit + burst);
            assert_true(counter + prev <= 2 * limit + burst);

            /* a window that owes nothing takes its limit and the burst */
            if (quota_burst_owed(prev, limit) == 0) {
                assert_int_equal(counter, limit + burst);
            }

            total += counter;
            prev = counter;
        }

        /* at most one burst in two windows */
        assert_true(total <= 40 * limit + 20 * burst);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_owed),
        cmocka_unit_test(test_saturates),
        cmocka_unit_test(test_carried_over_windows),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
