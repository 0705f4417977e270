/*
 * Unit tests for src/quota_tz.c, offsets: the UTC offset of zones of
 * the system's tzdata against glibc's localtime_r() from 1970 to 2100,
 * sampled every ~7 hours and at every transition either side sees, to
 * the second; the changes of 2026 in New York, London, Lord Howe and
 * Kathmandu one by one; footer TZ strings (RFC 8536's extensions
 * included) against glibc reading the same string; and a comparison
 * that is shown to fail when the zone or one transition is wrong.
 */

#include "tz_helpers.h"


/* not divisors of a day: samples fall at every time of day */
#define TZ_STEP       (7 * HOUR + 17 * MINUTE + 37)
#define TZ_STEP_MORE  (23 * HOUR + 51 * MINUTE + 13)


static const char  *zones[] = {
    "America/New_York", "Europe/London", "Australia/Lord_Howe",
    "Asia/Kathmandu", "Asia/Tokyo", "America/Santiago", "Pacific/Chatham",
    "Asia/Kolkata", "America/St_Johns", "Europe/Berlin",
    "Africa/Casablanca", "Pacific/Apia", "America/Sao_Paulo",
    "Australia/Sydney", "Pacific/Kiritimati", "America/Los_Angeles",
    "Europe/Moscow", "Asia/Tehran", "UTC", "Etc/GMT+5"
};

/*
 * more, sampled once a day (their changes are still found to the
 * second): midnight skipped, negative DST, rule times past 24 h or
 * below 0, a DST of 2 hours, +08:45
 */
static const char  *more_zones[] = {
    "America/Havana", "Asia/Beirut", "Europe/Dublin", "America/Nuuk",
    "Asia/Jerusalem", "Asia/Gaza", "Antarctica/Troll", "Australia/Eucla",
    "Africa/Cairo", "America/Asuncion"
};


/* where glibc's offset changes in (a, b], found by bisection */
static int64_t
glibc_change(int64_t a, int64_t b)
{
    int64_t  m;
    long     o;

    o = glibc_offset(a);

    while (b - a > 1) {
        m = a + (b - a) / 2;

        if (glibc_offset(m) == o) {
            a = m;

        } else {
            b = m;
        }
    }

    return b;
}


/* set while a test makes mismatches on purpose: nothing to tell */
static int  quiet;


/* 1 if tz and glibc disagree at t, told for the first few */
static unsigned
mismatch_at(const quota_tz_t *tz, int64_t t, long g, const char *name,
    unsigned bad)
{
    long  q;

    q = quota_tz_offset(tz, t);

    if (g == q) {
        return 0;
    }

    if (bad < 4 && !quiet) {
        print_message("%s at %lld: glibc %ld, quota_tz %ld\n", name,
                      (long long) t, g, q);
    }

    return 1;
}


/*
 * how often tz and glibc (already set to a zone) disagree from 1970 to
 * 2100: at samples step apart, either side of every change glibc shows between
 * two samples, and either side of every change quota_tz_next() gives,
 * which glibc must also show; *changes counts the latter
 */
static unsigned
compare_with_glibc(const quota_tz_t *tz, const char *name, int64_t step,
    unsigned *changes)
{
    int64_t   t, g, n;
    unsigned  bad;
    long      o, next;

    bad = 0;
    *changes = 0;
    o = glibc_offset(TZ_FROM);

    for (t = TZ_FROM; t < TZ_UNTIL; t += step, o = next) {
        bad += mismatch_at(tz, t, o, name, bad);
        next = glibc_offset(t + step);

        if (o != next) {
            g = glibc_change(t, t + step);
            bad += mismatch_at(tz, g - 1, o, name, bad);
            bad += mismatch_at(tz, g, glibc_offset(g), name, bad);
        }
    }

    for (t = TZ_FROM; quota_tz_next(tz, t, &n) == 0 && n < TZ_UNTIL; t = n) {
        assert_true(n > t);
        o = glibc_offset(n - 1);
        next = glibc_offset(n);
        bad += mismatch_at(tz, n - 1, o, name, bad);
        bad += mismatch_at(tz, n, next, name, bad);
        bad += mismatch_at(tz, n + 1, glibc_offset(n + 1), name, bad);
        bad += (o == next);
        (*changes)++;
    }

    return bad;
}


static void
test_glibc_follows_tz(void **state)
{
    (void) state;

    /* the oracle itself: TZ set by setenv() is the zone glibc uses */
    glibc_zone("America/New_York");
    assert_int_equal(glibc_offset(utc(2026, 1, 15, 12, 0, 0)), -5 * HOUR);
    assert_int_equal(glibc_offset(utc(2026, 7, 15, 12, 0, 0)), -4 * HOUR);

    glibc_zone("Asia/Kathmandu");
    assert_int_equal(glibc_offset(utc(2026, 7, 15, 12, 0, 0)),
                     5 * HOUR + 45 * MINUTE);
}


/* the changes compare_with_glibc() looked at, in all the zones */
static unsigned
compare_zones(const char **names, unsigned n, int64_t step)
{
    quota_tz_t  *tz;
    unsigned     i, changes, total;

    for (i = 0, total = 0; i < n; i++) {
        tz = load_zone(names[i]);
        glibc_zone(names[i]);

        assert_int_equal(compare_with_glibc(tz, names[i], step, &changes), 0);
        total += changes;
        free(tz);
    }

    return total;
}


static void
test_offsets_match_glibc_in_every_zone(void **state)
{
    (void) state;

    /* and the loops did see transitions: New York alone has 250 */
    assert_true(compare_zones(zones, sizeof(zones) / sizeof(zones[0]),
                              TZ_STEP) > 2000);
    assert_true(compare_zones(more_zones,
                              sizeof(more_zones) / sizeof(more_zones[0]),
                              TZ_STEP_MORE) > 1000);
}


static void
test_a_wrong_zone_or_transition_is_caught(void **state)
{
    quota_tz_t  *tz;
    unsigned     changes, i;

    (void) state;

    quiet = 1;

    /* Berlin's data against New York's clock */
    tz = load_zone("Europe/Berlin");
    glibc_zone("America/New_York");
    assert_true(compare_with_glibc(tz, "Europe/Berlin", TZ_STEP_MORE,
                                   &changes) > 0);
    free(tz);

    /* a quarter of an hour apart since 1986 */
    tz = load_zone("Asia/Kolkata");
    glibc_zone("Asia/Kathmandu");
    assert_true(compare_with_glibc(tz, "Asia/Kolkata", TZ_STEP_MORE,
                                   &changes) > 0);
    free(tz);

    /* one transition of 2026 a second late: the bisection sees it */
    tz = load_zone("America/New_York");
    glibc_zone("America/New_York");
    assert_int_equal(compare_with_glibc(tz, "America/New_York", TZ_STEP_MORE,
                                        &changes), 0);

    for (i = 0; i < tz->count; i++) {
        if (tz->times[i] == utc(2026, 3, 8, 7, 0, 0)) {
            tz->times[i]++;
            break;
        }
    }

    assert_true(i < tz->count);
    assert_true(compare_with_glibc(tz, "America/New_York", TZ_STEP_MORE,
                                   &changes) > 0);
    free(tz);

    quiet = 0;
}


/* the changes of the offset in [from, to) are exactly at[] to off[] */
static void
check_changes(const char *name, int64_t from, int64_t to,
    const int64_t *at, const long *before, const long *after, unsigned n)
{
    quota_tz_t  *tz;
    int64_t      t, next;
    unsigned     i;

    tz = load_zone(name);
    glibc_zone(name);

    for (i = 0, t = from; quota_tz_next(tz, t, &next) == 0 && next < to;
         i++, t = next)
    {
        assert_true(i < n);
        assert_int_equal(next, at[i]);
        check_offset(tz, next - 1, before[i]);
        check_offset(tz, next, after[i]);
        assert_int_equal(glibc_offset(next - 1), before[i]);
        assert_int_equal(glibc_offset(next), after[i]);
    }

    assert_int_equal(i, n);
    free(tz);
}


static void
test_every_change_of_2026(void **state)
{
    const struct {
        const char  *zone;
        int64_t      at[2];
        long         before[2];
        long         after[2];
    } zones2026[] = {
        /* 02:00 EST becomes 03:00 EDT; 02:00 EDT becomes 01:00 EST */
        { "America/New_York",
          { utc(2026, 3, 8, 7, 0, 0), utc(2026, 11, 1, 6, 0, 0) },
          { -5 * HOUR, -4 * HOUR }, { -4 * HOUR, -5 * HOUR } },

        { "Europe/London",
          { utc(2026, 3, 29, 1, 0, 0), utc(2026, 10, 25, 1, 0, 0) },
          { 0, HOUR }, { HOUR, 0 } },

        /*
         * a DST of half an hour: 02:00 +11 goes back to 01:30 +1030 on
         * Sunday April 5th, 02:00 +1030 forward to 02:30 +11 on
         * October 4th
         */
        { "Australia/Lord_Howe",
          { utc(2026, 4, 4, 15, 0, 0), utc(2026, 10, 3, 15, 30, 0) },
          { 11 * HOUR, 10 * HOUR + 30 * MINUTE },
          { 10 * HOUR + 30 * MINUTE, 11 * HOUR } }
    };

    unsigned  i;

    (void) state;

    for (i = 0; i < sizeof(zones2026) / sizeof(zones2026[0]); i++) {
        check_changes(zones2026[i].zone, utc(2026, 1, 1, 0, 0, 0),
                      utc(2027, 1, 1, 0, 0, 0), zones2026[i].at,
                      zones2026[i].before, zones2026[i].after, 2);
    }
}


static void
test_kathmandu_2026_has_no_change(void **state)
{
    quota_tz_t  *tz;
    int64_t      t, next;

    (void) state;

    tz = load_zone("Asia/Kathmandu");
    glibc_zone("Asia/Kathmandu");

    /* +05:45 since 1986, and no rule to change it */
    assert_int_equal(quota_tz_next(tz, utc(2026, 1, 1, 0, 0, 0), &next), -1);

    for (t = utc(2026, 1, 1, 0, 0, 0); t < utc(2027, 1, 1, 0, 0, 0);
         t += 15 * MINUTE)
    {
        check_offset(tz, t, 5 * HOUR + 45 * MINUTE);
    }

    assert_int_equal(glibc_offset(utc(2026, 6, 1, 0, 0, 0)),
                     5 * HOUR + 45 * MINUTE);

    /* and the one change since 1970: +05:30 to +05:45 */
    check_changes("Asia/Kathmandu", utc(1970, 1, 1, 0, 0, 0),
                  utc(2100, 1, 1, 0, 0, 0),
                  (int64_t[]) { utc(1985, 12, 31, 18, 30, 0) },
                  (long[]) { 5 * HOUR + 30 * MINUTE },
                  (long[]) { 5 * HOUR + 45 * MINUTE }, 1);
    free(tz);
}


static void
test_footer_rules_match_glibc(void **state)
{
    static const char  *rules[] = {
        "EST5EDT,M3.2.0,M11.1.0",
        "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
        "<+0545>-5:45",
        "<-04>4<-03>,M9.1.6/24,M4.1.6/24",          /* Santiago */
        "<-02>2<-01>,M3.5.0/-1,M10.5.0/0",          /* Nuuk: before 0 h */
        "IST-2IDT,M3.4.4/26,M10.5.0",               /* Jerusalem */
        "EET-2EEST,M3.4.4/50,M10.4.4/50",           /* Gaza: past 48 h */
        "IST-1GMT0,M10.5.0,M3.5.0/1",               /* Dublin: negative */
        "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45",
        "NST3:30NDT,M3.2.0,M11.1.0",
        "CST5CDT,M3.2.0/0,M11.1.0/1",               /* Havana */
        "<+00>0<+02>-2,M3.5.0/1,M10.5.0/3",         /* Troll: 2 h */
        "AAA3BBB,J60/1,J300/2",                     /* Jn: no Feb 29 */
        "AAA3BBB,59/1,300/2",                       /* n: Feb 29 counted */
        "<-0930>9:30",
        "UTC0"
    };

    quota_tz_t  *tz;
    unsigned     i, changes;
    int64_t      next;

    (void) state;

    tz = malloc(sizeof(quota_tz_t));
    assert_non_null(tz);

    for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        assert_int_equal(tzb_rule_zone(rules[i], tz), 0);
        glibc_zone(rules[i]);
        assert_int_equal(compare_with_glibc(tz, rules[i], TZ_STEP_MORE,
                                            &changes), 0);
    }

    /*
     * DST all year, as RFC 8536 puts it, changes nothing, ever (glibc,
     * evaluating each UTC year alone, shows standard time for the first
     * hours of January 1st: not compared)
     */
    assert_int_equal(tzb_rule_zone("EST5EDT,0/0,J365/25", tz), 0);
    assert_int_equal(quota_tz_next(tz, 0, &next), -1);
    check_offset(tz, utc(2026, 12, 31, 23, 59, 59), -4 * HOUR);
    check_offset(tz, utc(2027, 1, 1, 5, 0, 0), -4 * HOUR);

    /* no rule after the names: the US rules */
    assert_int_equal(tzb_rule_zone("EST5EDT", tz), 0);
    check_offset(tz, utc(2026, 3, 8, 6, 59, 59), -5 * HOUR);
    check_offset(tz, utc(2026, 3, 8, 7, 0, 0), -4 * HOUR);
    check_offset(tz, utc(2026, 11, 1, 6, 0, 0), -5 * HOUR);

    free(tz);
}


static void
test_rule_change_in_the_utc_year_before(void **state)
{
    quota_tz_t  *tz;
    int64_t      next;

    (void) state;

    tz = malloc(sizeof(quota_tz_t));
    assert_non_null(tz);

    /*
     * at +13, DST from January 1st 01:00 starts on December 31st at
     * 12:00 UTC: a change of next year's rule in this UTC year (glibc,
     * taking the rules of t's UTC year only, misses it: not compared)
     */
    assert_int_equal(tzb_rule_zone("<+13>-13<+14>,J1/1,J300/3", tz), 0);
    check_offset(tz, utc(2026, 12, 31, 11, 59, 59), 13 * HOUR);
    check_offset(tz, utc(2026, 12, 31, 12, 0, 0), 14 * HOUR);
    assert_int_equal(quota_tz_next(tz, utc(2026, 10, 30, 0, 0, 0), &next), 0);
    assert_int_equal(next, utc(2026, 12, 31, 12, 0, 0));

    /* and its end, October 27th 03:00 +14 */
    check_offset(tz, utc(2026, 10, 26, 12, 59, 59), 14 * HOUR);
    check_offset(tz, utc(2026, 10, 26, 13, 0, 0), 13 * HOUR);
    free(tz);
}


static void
test_null_zone_and_far_instants(void **state)
{
    quota_tz_t  *tz;
    int64_t      next;
    long         o;

    (void) state;

    /* no zone is UTC, for limits that name none */
    assert_int_equal(quota_tz_offset(NULL, utc(2026, 7, 1, 0, 0, 0)), 0);
    assert_int_equal(quota_tz_next(NULL, 0, &next), -1);

    /* instants far from any year in tzdata still get one of its offsets */
    tz = load_zone("America/New_York");
    o = quota_tz_offset(tz, INT64_MAX);
    assert_true(o == -5 * HOUR || o == -4 * HOUR);
    o = quota_tz_offset(tz, INT64_MIN);
    assert_int_equal(o, -(4 * HOUR + 56 * MINUTE + 2));     /* LMT */
    assert_int_equal(quota_tz_next(tz, INT64_MAX - 1, &next), -1);
    assert_int_equal(quota_tz_next(tz, INT64_MIN, &next), 0);
    assert_int_equal(next, utc(1883, 11, 18, 17, 0, 0));
    free(tz);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_glibc_follows_tz),
        cmocka_unit_test(test_offsets_match_glibc_in_every_zone),
        cmocka_unit_test(test_a_wrong_zone_or_transition_is_caught),
        cmocka_unit_test(test_every_change_of_2026),
        cmocka_unit_test(test_kathmandu_2026_has_no_change),
        cmocka_unit_test(test_footer_rules_match_glibc),
        cmocka_unit_test(test_rule_change_in_the_utc_year_before),
        cmocka_unit_test(test_null_zone_and_far_instants),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
