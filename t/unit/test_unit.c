/*
 * Unit tests for src/quota_unit.c: amounts with their units as written
 * in quota_limit, refused forms, names, and amounts as messages say them.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "quota_unit.h"


static int
parse(const char *s, quota_unit_e *unit, int64_t *amount)
{
    return quota_unit_parse(s, strlen(s), unit, amount);
}


static void
test_parse(void **state)
{
    int64_t       a;
    quota_unit_e  u;

    (void) state;

    assert_int_equal(parse("50", &u, &a), 0);
    assert_int_equal(u, QUOTA_UNIT_USD);
    assert_int_equal(a, 50000000);

    assert_int_equal(parse("0.25", &u, &a), 0);
    assert_int_equal(u, QUOTA_UNIT_USD);
    assert_int_equal(a, 250000);

    assert_int_equal(parse("60req", &u, &a), 0);
    assert_int_equal(u, QUOTA_UNIT_REQ);
    assert_int_equal(a, 60);

    assert_int_equal(parse("2000000tok", &u, &a), 0);
    assert_int_equal(u, QUOTA_UNIT_TOK);
    assert_int_equal(a, 2000000);

    assert_int_equal(parse("0req", &u, &a), 0);
    assert_int_equal(a, 0);

    assert_int_equal(parse("1000000000000000tok", &u, &a), 0);
    assert_int_equal(a, 1000000000000000LL);
}


static void
test_parse_refused(void **state)
{
    size_t        i;
    int64_t       a;
    quota_unit_e  u;

    static const char  *bad[] = {
        "", "req", "tok", "1.5req", "-1req", "+1req", "1 req", "1Req",
        "1reqs", "1000000000000001tok", "99999999999999999999req",
        "1e3tok", "1usd", "$5", "5$", "1,000tok", "x", "0x10req"
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        a = 7;
        assert_int_equal(parse(bad[i], &u, &a), -1);
        assert_int_equal(a, 7);
    }
}


static void
check_format(quota_unit_e unit, int64_t amount, const char *want)
{
    char    buf[QUOTA_UNIT_AMOUNT_LEN];
    size_t  n;

    memset(buf, 'x', sizeof(buf));
    n = quota_unit_format(unit, amount, buf);

    assert_int_equal(n, strlen(want));
    assert_string_equal(buf, want);
}


static void
test_format(void **state)
{
    (void) state;

    check_format(QUOTA_UNIT_USD, 50000000, "$50.00");
    check_format(QUOTA_UNIT_USD, 1234567, "$1.234567");
    check_format(QUOTA_UNIT_REQ, 1, "1 request");
    check_format(QUOTA_UNIT_REQ, 3, "3 requests");
    check_format(QUOTA_UNIT_REQ, 0, "0 requests");
    check_format(QUOTA_UNIT_TOK, 1, "1 token");
    check_format(QUOTA_UNIT_TOK, 3000, "3,000 tokens");
    check_format(QUOTA_UNIT_TOK, 999, "999 tokens");
    check_format(QUOTA_UNIT_TOK, 2000000, "2,000,000 tokens");
    check_format(QUOTA_UNIT_TOK, -1500, "-1,500 tokens");
    check_format(QUOTA_UNIT_REQ, INT64_MAX,
                 "9,223,372,036,854,775,807 requests");
    check_format(QUOTA_UNIT_REQ, INT64_MIN,
                 "-9,223,372,036,854,775,808 requests");

    assert_string_equal(quota_unit_name(QUOTA_UNIT_USD), "usd");
    assert_string_equal(quota_unit_name(QUOTA_UNIT_REQ), "req");
    assert_string_equal(quota_unit_name(QUOTA_UNIT_TOK), "tok");
}


/* the names the ledger and keys use read back to their units */
static void
test_by_name(void **state)
{
    quota_unit_e  u;

    (void) state;

    assert_int_equal(quota_unit_by_name("usd", 3, &u), 0);
    assert_int_equal(u, QUOTA_UNIT_USD);
    assert_int_equal(quota_unit_by_name("req", 3, &u), 0);
    assert_int_equal(u, QUOTA_UNIT_REQ);
    assert_int_equal(quota_unit_by_name("tok", 3, &u), 0);
    assert_int_equal(u, QUOTA_UNIT_TOK);
    assert_int_equal(quota_unit_by_name("to", 2, &u), -1);
    assert_int_equal(quota_unit_by_name("toks", 4, &u), -1);
    assert_int_equal(quota_unit_by_name("USD", 3, &u), -1);
    assert_int_equal(quota_unit_by_name("", 0, &u), -1);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_refused),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_by_name),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
