/*
 * Unit tests for src/quota_price.c: finding a model's price row (exact
 * match, prefix, longest prefix whatever the table order, "default", the
 * synthesized highest prices, always filled; case, length-bounded reads,
 * an empty table) and the cost of tokens (rounded up once and not per
 * term, cached tokens at the cached price or at the input price when the
 * row has none, negative counts and prices as 0, exact 128-bit sums of
 * huge counts, saturation at QUOTA_MONEY_MAX), checked against a 64-bit
 * reference on random values.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "quota_money.h"
#include "quota_price.h"


#define U(s)     ((const unsigned char *) (s))


#define UNIT_RNG_SEED  0xa4093822299f31d0ULL
#include "unit_helpers.h"


static quota_price_t
row(const char *model, int64_t input, int64_t output, int64_t cached)
{
    quota_price_t  p;

    memset(&p, 0, sizeof(p));
    p.model_len = strlen(model);
    memcpy(p.model, model, p.model_len);
    p.input = input;
    p.output = output;
    p.cached = cached;

    return p;
}


static const quota_price_t *
find(const quota_price_t *table, size_t n, const char *model,
    quota_price_t *highest)
{
    return quota_price_find(table, n, U(model), strlen(model), highest);
}


static int64_t
cost(int64_t input, int64_t output, int64_t cached, int64_t in_tokens,
    int64_t cached_tokens, int64_t out_tokens)
{
    quota_price_t   p;
    quota_tokens_t  t;

    p = row("m", input, output, cached);
    t.input = in_tokens;
    t.cached = cached_tokens;
    t.output = out_tokens;

    return quota_price_cost(&p, &t);
}


static void
test_find_exact_match(void **state)
{
    quota_price_t  t[4], h;

    (void) state;

    t[0] = row("gpt-4", 30000000, 60000000, -1);
    t[1] = row("gpt-4o", 2500000, 10000000, 1250000);
    t[2] = row("gpt-4o-mini", 150000, 600000, 75000);
    t[3] = row("default", 1000000, 2000000, -1);

    assert_ptr_equal(find(t, 4, "gpt-4o", &h), &t[1]);
    assert_ptr_equal(find(t, 4, "gpt-4", &h), &t[0]);
    assert_ptr_equal(find(t, 4, "gpt-4o-mini", &h), &t[2]);
    assert_ptr_equal(find(t, 4, "default", &h), &t[3]);
}


static void
test_find_prefix(void **state)
{
    quota_price_t  t[3], h;

    (void) state;

    t[0] = row("gpt-4o", 2500000, 10000000, 1250000);
    t[1] = row("claude-sonnet-4", 3000000, 15000000, 300000);
    t[2] = row("default", 1000000, 2000000, -1);

    assert_ptr_equal(find(t, 3, "gpt-4o-2024-08-06", &h), &t[0]);
    assert_ptr_equal(find(t, 3, "gpt-4ox", &h), &t[0]);
    assert_ptr_equal(find(t, 3, "claude-sonnet-4-5-20250929", &h), &t[1]);

    /* a row longer than the model is not its prefix */
    assert_ptr_equal(find(t, 3, "gpt-4", &h), &t[2]);
    assert_ptr_equal(find(t, 3, "gpt", &h), &t[2]);

    /* nor is a row that differs in the middle */
    assert_ptr_equal(find(t, 3, "gpt-4-o", &h), &t[2]);
}


static void
test_find_longest_prefix_in_any_order(void **state)
{
    size_t                i, n;
    quota_price_t         a[3], b[3], h;
    const quota_price_t  *p;

    (void) state;

    a[0] = row("gpt-4", 30000000, 60000000, -1);
    a[1] = row("gpt-4o", 2500000, 10000000, 1250000);
    a[2] = row("gpt-4o-mini", 150000, 600000, 75000);

    /* the same rows, reversed */
    for (i = 0; i < 3; i++) {
        b[i] = a[2 - i];
    }

    n = 3;

    p = find(a, n, "gpt-4o-mini-2024-07-18", &h);
    assert_ptr_equal(p, &a[2]);
    p = find(b, n, "gpt-4o-mini-2024-07-18", &h);
    assert_ptr_equal(p, &b[0]);

    p = find(a, n, "gpt-4o-2024-05-13", &h);
    assert_ptr_equal(p, &a[1]);
    p = find(b, n, "gpt-4o-2024-05-13", &h);
    assert_ptr_equal(p, &b[1]);

    p = find(a, n, "gpt-4-turbo", &h);
    assert_ptr_equal(p, &a[0]);
    p = find(b, n, "gpt-4-turbo", &h);
    assert_ptr_equal(p, &b[2]);

    /* an exact match, though a shorter row is a prefix of it too */
    p = find(b, n, "gpt-4o", &h);
    assert_ptr_equal(p, &b[1]);
}


static void
test_find_default(void **state)
{
    quota_price_t  t[3], h;

    (void) state;

    t[0] = row("gpt-4o", 2500000, 10000000, 1250000);
    t[1] = row("default", 5000000, 20000000, -1);
    t[2] = row("o1", 15000000, 60000000, 7500000);

    assert_ptr_equal(find(t, 3, "llama-3.1-70b", &h), &t[1]);
    assert_ptr_equal(find(t, 3, "", &h), &t[1]);
    assert_ptr_equal(find(t, 3, "GPT-4O", &h), &t[1]);

    /* "default" as a prefix: still the default row */
    assert_ptr_equal(find(t, 3, "default-model", &h), &t[1]);
}


static void
test_find_highest_without_default(void **state)
{
    quota_price_t         t[3], h;
    const quota_price_t  *p;

    (void) state;

    t[0] = row("gpt-4o", 2500000, 10000000, 1250000);
    t[1] = row("o1", 15000000, 60000000, 7500000);
    t[2] = row("cheap-big-out", 100000, 80000000, -1);

    memset(&h, 0x5a, sizeof(h));
    p = find(t, 3, "unknown-model", &h);

    assert_ptr_equal(p, &h);
    assert_int_equal(h.input, 15000000);
    assert_int_equal(h.output, 80000000);
    assert_int_equal(h.cached, 7500000);
    assert_int_equal(h.model_len, 0);

    /* a row without a cached price counts its input price as cached */
    t[2] = row("cheap-big-out", 20000000, 80000000, -1);

    p = find(t, 3, "", &h);

    assert_ptr_equal(p, &h);
    assert_int_equal(h.input, 20000000);
    assert_int_equal(h.output, 80000000);
    assert_int_equal(h.cached, 20000000);
}


static void
test_find_highest_cached_all_rows_without_cached(void **state)
{
    quota_price_t  t[2], h;

    (void) state;

    t[0] = row("a", 3000000, 1000000, -1);
    t[1] = row("b", 1000000, 4000000, -1);

    assert_ptr_equal(find(t, 2, "c", &h), &h);
    assert_int_equal(h.input, 3000000);
    assert_int_equal(h.output, 4000000);
    assert_int_equal(h.cached, 3000000);

    /* an unknown model at the highest prices is never free */
    {
        quota_tokens_t  tok = { 1000000, 1000000, 1000000 };

        assert_int_equal(quota_price_cost(&h, &tok), 10000000);
    }
}


static void
test_find_always_fills_highest(void **state)
{
    quota_price_t  t[2], h;

    (void) state;

    t[0] = row("default", 1000000, 2000000, -1);
    t[1] = row("gpt-4o", 2500000, 10000000, 1250000);

    memset(&h, 0, sizeof(h));
    assert_ptr_equal(find(t, 2, "gpt-4o", &h), &t[1]);
    assert_int_equal(h.input, 2500000);
    assert_int_equal(h.output, 10000000);
    assert_int_equal(h.cached, 1250000);

    memset(&h, 0, sizeof(h));
    assert_ptr_equal(find(t, 2, "", &h), &t[0]);
    assert_int_equal(h.input, 2500000);
    assert_int_equal(h.output, 10000000);
    assert_int_equal(h.cached, 1250000);
}


static void
test_find_empty_table(void **state)
{
    quota_price_t  h;

    (void) state;

    assert_null(quota_price_find(NULL, 0, U("gpt-4o"), 6, &h));
}


static void
test_find_reads_only_len_bytes(void **state)
{
    quota_price_t  t[2], h;

    (void) state;

    t[0] = row("gpt-4o", 2500000, 10000000, 1250000);
    t[1] = row("gpt-4o-mini", 150000, 600000, 75000);

    /* "gpt-4o" of "gpt-4o-mini": the exact row, not the mini one */
    assert_ptr_equal(quota_price_find(t, 2, U("gpt-4o-mini"), 6, &h), &t[0]);
    assert_ptr_equal(quota_price_find(t, 2, U("gpt-4o-minix"), 11, &h),
                     &t[1]);
    assert_ptr_equal(quota_price_find(t, 2, U("gpt-4"), 5, &h), &h);
}


static void
test_find_single_row(void **state)
{
    quota_price_t  t[1], h;

    (void) state;

    t[0] = row("gpt-4o", 2500000, 10000000, -1);

    assert_ptr_equal(find(t, 1, "gpt-4o", &h), &t[0]);
    assert_ptr_equal(find(t, 1, "gpt-4o-x", &h), &t[0]);
    assert_ptr_equal(find(t, 1, "claude", &h), &h);
    assert_int_equal(h.input, 2500000);
    assert_int_equal(h.output, 10000000);
    assert_int_equal(h.cached, 2500000);
}


static void
test_cost_rounds_up(void **state)
{
    (void) state;

    /* 1 token at $2.50 per 1M: 2.5 micro-dollars, charged 3 */
    assert_int_equal(cost(2500000, 10000000, -1, 1, 0, 0), 3);

    /* 1 output token at $10 per 1M: exactly 10 */
    assert_int_equal(cost(2500000, 10000000, -1, 0, 0, 1), 10);

    /* a millionth of a micro-dollar is a micro-dollar */
    assert_int_equal(cost(1, 1, -1, 1, 0, 0), 1);
    assert_int_equal(cost(1, 1, -1, 1000000, 0, 0), 1);
    assert_int_equal(cost(1, 1, -1, 1000001, 0, 0), 2);

    assert_int_equal(cost(2500000, 10000000, -1, 0, 0, 0), 0);
    assert_int_equal(cost(2500000, 10000000, -1, 1000000, 0, 0), 2500000);
    assert_int_equal(cost(2500000, 10000000, -1, 1000, 0, 500), 7500);
    assert_int_equal(cost(150000, 600000, 75000, 1234, 0, 567), 526);
}


static void
test_cost_rounds_once_not_per_term(void **state)
{
    (void) state;

    /* 2.5 + 0.5 = 3 exactly; rounded per term it would be 3 + 1 = 4 */
    assert_int_equal(cost(2500000, 500000, -1, 1, 0, 1), 3);

    /* 0.5 + 0.5 + 0.5 = 1.5 -> 2, not 3 */
    assert_int_equal(cost(500000, 500000, 500000, 1, 1, 1), 2);

    /* 1/3 + 1/3 + 1/3 of a micro-dollar (x3 each): 1, not 3 */
    assert_int_equal(cost(333334, 333333, 333333, 1, 1, 1), 1);
}


static void
test_cost_cached_price(void **state)
{
    (void) state;

    /* cached at its own price */
    assert_int_equal(cost(2500000, 10000000, 1250000, 0, 1000000, 0),
                     1250000);
    assert_int_equal(cost(2500000, 10000000, 1250000, 1000, 2000, 300),
                     2500 + 2500 + 3000);

    /* no cached price: cached input is input */
    assert_int_equal(cost(2500000, 10000000, -1, 0, 1000000, 0), 2500000);
    assert_int_equal(cost(2500000, 10000000, -1, 1000, 2000, 300),
                     2500 + 5000 + 3000);

    /* a cached price of 0 is free, not "charged as input" */
    assert_int_equal(cost(2500000, 10000000, 0, 0, 1000000, 0), 0);
}


static void
test_cost_negative_tokens_count_zero(void **state)
{
    (void) state;

    assert_int_equal(cost(2500000, 10000000, 1250000, -1, 0, 0), 0);
    assert_int_equal(cost(2500000, 10000000, 1250000, INT64_MIN, INT64_MIN,
                          INT64_MIN), 0);
    assert_int_equal(cost(2500000, 10000000, 1250000, -1000000, 1000000,
                          -5), 1250000);
    assert_int_equal(cost(2500000, 10000000, 1250000, 1000000, -1,
                          1000000), 12500000);
}


static void
test_cost_negative_prices_count_zero(void **state)
{
    (void) state;

    assert_int_equal(cost(-2500000, 10000000, -1, 1000000, 1000000, 0), 0);
    assert_int_equal(cost(2500000, -1, -7, 0, 0, 1000000), 0);
    assert_int_equal(cost(INT64_MIN, INT64_MIN, -1, INT64_MAX, INT64_MAX,
                          INT64_MAX), 0);
}


static void
test_cost_big_numbers_exact(void **state)
{
    (void) state;

    /* 10^12 tokens at $2.50: 2.5 * 10^12 micro-dollars, exact */
    assert_int_equal(cost(2500000, 0, -1, 1000000000000LL, 0, 0),
                     2500000000000LL);

    /* products far past 2^64, the sum exact: (2^62 * 3) / 10^6, up */
    assert_int_equal(cost(3, 0, -1, INT64_C(1) << 62, 0, 0),
                     13835058055283LL);

    /* just at the maximum, and one token more */
    assert_int_equal(cost(1000000, 0, -1, QUOTA_MONEY_MAX, 0, 0),
                     QUOTA_MONEY_MAX);
    assert_int_equal(cost(1000000, 0, -1, QUOTA_MONEY_MAX + 1, 0, 0),
                     QUOTA_MONEY_MAX);
    assert_int_equal(cost(1000000, 0, -1, QUOTA_MONEY_MAX - 1, 0, 0),
                     QUOTA_MONEY_MAX - 1);

    /* a millionth of a micro-dollar over the maximum: saturated */
    assert_int_equal(cost(1000000, 0, 1, QUOTA_MONEY_MAX, 1, 0),
                     QUOTA_MONEY_MAX);
    assert_int_equal(cost(1000000, 0, 1, QUOTA_MONEY_MAX - 1, 1, 0),
                     QUOTA_MONEY_MAX);
    assert_int_equal(cost(1000000, 0, 1, QUOTA_MONEY_MAX - 2, 1, 0),
                     QUOTA_MONEY_MAX - 1);
}


static void
test_cost_saturates(void **state)
{
    (void) state;

    assert_int_equal(cost(INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX,
                          INT64_MAX, INT64_MAX), QUOTA_MONEY_MAX);
    assert_int_equal(cost(QUOTA_MONEY_MAX, QUOTA_MONEY_MAX, -1, INT64_MAX,
                          INT64_MAX, INT64_MAX), QUOTA_MONEY_MAX);
    assert_int_equal(cost(QUOTA_MONEY_MAX, 0, -1, 1000000001, 0, 0),
                     QUOTA_MONEY_MAX);
    assert_int_equal(cost(QUOTA_MONEY_MAX, 0, -1, 1000000, 0, 0),
                     QUOTA_MONEY_MAX);
    assert_int_equal(cost(QUOTA_MONEY_MAX, 0, -1, 999999, 0, 0),
                     QUOTA_MONEY_MAX - 1000000000LL);
}


static void
test_cost_null_arguments(void **state)
{
    quota_price_t   p;
    quota_tokens_t  t = { 1, 1, 1 };

    (void) state;

    p = row("m", 1000000, 1000000, -1);

    /* no row: never free */
    assert_int_equal(quota_price_cost(NULL, &t), QUOTA_MONEY_MAX);
    assert_int_equal(quota_price_cost(&p, NULL), 0);
}


static void
test_cost_matches_64_bit_reference(void **state)
{
    int       i;
    int64_t   in, out, ca, ti, to, tc, want, eff;
    uint64_t  sum;

    (void) state;

    for (i = 0; i < 200000; i++) {
        /* below 2^31 each, so every product and the sum fit 64 bits */
        in = (int64_t) (rng() % 0x80000000ULL);
        out = (int64_t) (rng() % 0x80000000ULL);
        ca = (i & 3) == 0 ? -1 : (int64_t) (rng() % 0x80000000ULL);
        ti = (int64_t) (rng() % 0x80000000ULL);
        to = (int64_t) (rng() % 0x80000000ULL);
        tc = (int64_t) (rng() % 0x80000000ULL);

        if (i & 4) {
            ti %= 1000;
            to %= 1000;
            tc %= 1000;
        }

        eff = ca < 0 ? in : ca;
        sum = (uint64_t) ti * (uint64_t) in + (uint64_t) tc * (uint64_t) eff
              + (uint64_t) to * (uint64_t) out;
        want = (int64_t) (sum / 1000000 + (sum % 1000000 != 0));

        if (want > QUOTA_MONEY_MAX) {
            want = QUOTA_MONEY_MAX;
        }

        assert_int_equal(cost(in, out, ca, ti, tc, to), want);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_find_exact_match),
        cmocka_unit_test(test_find_prefix),
        cmocka_unit_test(test_find_longest_prefix_in_any_order),
        cmocka_unit_test(test_find_default),
        cmocka_unit_test(test_find_highest_without_default),
        cmocka_unit_test(test_find_highest_cached_all_rows_without_cached),
        cmocka_unit_test(test_find_always_fills_highest),
        cmocka_unit_test(test_find_empty_table),
        cmocka_unit_test(test_find_reads_only_len_bytes),
        cmocka_unit_test(test_find_single_row),
        cmocka_unit_test(test_cost_rounds_up),
        cmocka_unit_test(test_cost_rounds_once_not_per_term),
        cmocka_unit_test(test_cost_cached_price),
        cmocka_unit_test(test_cost_negative_tokens_count_zero),
        cmocka_unit_test(test_cost_negative_prices_count_zero),
        cmocka_unit_test(test_cost_big_numbers_exact),
        cmocka_unit_test(test_cost_saturates),
        cmocka_unit_test(test_cost_null_arguments),
        cmocka_unit_test(test_cost_matches_64_bit_reference),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
