/*
 * Unit tests for src/quota_key.c, the key layout: scope path elements at
 * depth 0 and below, the key tail for every period and its length bound,
 * the full key "<prefix>{tenant=acme}/user=bob:llm:day:2026-11-23",
 * distinct scope paths giving distinct keys, and scope/meter name
 * validation.
 */

#include "key_helpers.h"


static void
test_path_element_at_depth_zero(void **state)
{
    unsigned char   b[64];
    unsigned char  *e;

    (void) state;

    memset(b, CANARY, sizeof(b));
    e = quota_key_path_elt(b, 0, U("tenant"), 6, U("acme"), 4);

    assert_int_equal(e - b, 13);
    assert_memory_equal(b, "{tenant=acme}", 13);
    assert_int_equal(*e, CANARY);
    assert_int_equal(quota_key_path_elt_len(0, 6, U("acme"), 4), 13);
}


static void
test_path_element_below_depth_zero(void **state)
{
    unsigned char   b[64];
    unsigned char  *e;
    size_t          depth;

    (void) state;

    for (depth = 1; depth < 8; depth++) {
        memset(b, CANARY, sizeof(b));
        e = quota_key_path_elt(b, depth, U("user"), 4, U("bob"), 3);

        assert_int_equal(e - b, 9);
        assert_memory_equal(b, "/user=bob", 9);
        assert_int_equal(*e, CANARY);
        assert_int_equal(quota_key_path_elt_len(depth, 4, U("bob"), 3), 9);
    }
}


static void
test_path_element_escapes_its_value(void **state)
{
    unsigned char   b[64];
    unsigned char  *e;

    (void) state;

    memset(b, CANARY, sizeof(b));
    e = quota_key_path_elt(b, 0, U("tenant"), 6, U("a}b"), 3);
    assert_int_equal(e - b, 14);
    assert_memory_equal(b, "{tenant=a%7Db}", 14);
    assert_int_equal(quota_key_path_elt_len(0, 6, U("a}b"), 3), 14);

    memset(b, CANARY, sizeof(b));
    e = quota_key_path_elt(b, 2, U("team"), 4, U("x/y=z"), 5);
    assert_memory_equal(b, "/team=x%2Fy%3Dz", 15);
    assert_int_equal(e - b, 15);
    assert_int_equal(quota_key_path_elt_len(2, 4, U("x/y=z"), 5), 15);

    /* an empty value is legal and still delimited */
    memset(b, CANARY, sizeof(b));
    e = quota_key_path_elt(b, 0, U("tenant"), 6, U(""), 0);
    assert_int_equal(e - b, 9);
    assert_memory_equal(b, "{tenant=}", 9);
    assert_int_equal(quota_key_path_elt_len(0, 6, U(""), 0), 9);
}


static void
test_path_element_len_is_exact(void **state)
{
    unsigned char   value[QUOTA_KEY_VALUE_MAX];
    unsigned char   b[3 * QUOTA_KEY_VALUE_MAX + 128];
    unsigned char  *e;
    size_t          len, depth, i;
    int             k;

    (void) state;

    for (k = 0; k < 20000; k++) {
        len = (size_t) (rng() % (QUOTA_KEY_VALUE_MAX + 1));
        depth = (size_t) (rng() % 4);

        for (i = 0; i < len; i++) {
            value[i] = (unsigned char) rng();
        }

        memset(b, CANARY, sizeof(b));
        e = quota_key_path_elt(b, depth, U("team_1"), 6, value, len);

        assert_int_equal(e - b,
                         quota_key_path_elt_len(depth, 6, value, len));
        assert_int_equal(*e, CANARY);
        assert_int_equal(b[0], depth == 0 ? '{' : '/');
        assert_int_equal(e[-1] == '}', depth == 0);
    }
}


/* the tail for (meter, period, start) is exactly want, within tail_len */
#define check_tail(meter, p, start, want)                                    \
    do {                                                                     \
        unsigned char   b_[128];                                             \
        unsigned char  *e_;                                                  \
                                                                             \
        memset(b_, CANARY, sizeof(b_));                                      \
        e_ = quota_key_tail(b_, U(meter), strlen(meter), (p), (start));      \
        assert_int_equal(e_ - b_, strlen(want));                             \
        assert_memory_equal(b_, (want), strlen(want));                       \
        assert_true((size_t) (e_ - b_)                                       \
                    <= quota_key_tail_len(strlen(meter)));                   \
        assert_int_equal(*e_, CANARY);                                       \
    } while (0)


static void
test_tail_for_every_period(void **state)
{
    (void) state;

    check_tail("llm", QUOTA_PERIOD_MINUTE, T_MINUTE,
               ":llm:minute:2026-11-23T14:05");
    check_tail("llm", QUOTA_PERIOD_HOUR, T_HOUR, ":llm:hour:2026-11-23T14");
    check_tail("llm", QUOTA_PERIOD_DAY, T_DAY, ":llm:day:2026-11-23");
    check_tail("llm", QUOTA_PERIOD_WEEK, T_DAY, ":llm:week:2026-11-23");
    check_tail("llm", QUOTA_PERIOD_MONTH, T_MONTH, ":llm:month:2026-11");
    check_tail("gpu-hours", QUOTA_PERIOD_DAY, T_DAY,
               ":gpu-hours:day:2026-11-23");
}


#define check_counter_tail(p, unit, zone, label, want)                       \
    do {                                                                     \
        unsigned char  b_[128], *e_;                                         \
        size_t         zl_ = strlen(zone);                                    \
                                                                             \
        e_ = quota_key_counter_tail(b_, U("llm"), 3, (p), (unit), (zone),    \
                                    zl_, (label), strlen(label));            \
        assert_int_equal((size_t) (e_ - b_), strlen(want));                  \
        assert_memory_equal(b_, (want), strlen(want));                       \
        assert_true((size_t) (e_ - b_)                                       \
                    <= quota_key_counter_tail_len(3, zl_));                  \
    } while (0)


/* usd in UTC is named as before units; the others say what they count */
static void
test_tail_with_units_and_zones(void **state)
{
    (void) state;

    check_counter_tail(QUOTA_PERIOD_DAY, QUOTA_UNIT_USD, "", "2026-11-23",
                       ":llm:day:2026-11-23");
    check_counter_tail(QUOTA_PERIOD_MINUTE, QUOTA_UNIT_REQ, "",
                       "2026-11-23T14:05", ":llm:minute.req:2026-11-23T14:05");
    check_counter_tail(QUOTA_PERIOD_DAY, QUOTA_UNIT_TOK, "Asia/Tokyo",
                       "2026-11-24", ":llm:day.tok@Asia/Tokyo:2026-11-24");
    check_counter_tail(QUOTA_PERIOD_MONTH, QUOTA_UNIT_USD,
                       "America/Argentina/ComodRivadavia", "2026-11",
                       ":llm:month@America/Argentina/ComodRivadavia:2026-11");
    check_counter_tail(QUOTA_PERIOD_HOUR, QUOTA_UNIT_TOK, "",
                       "2026-11-23T14", ":llm:hour.tok:2026-11-23T14");
}


static void
test_tail_len_is_an_upper_bound(void **state)
{
    unsigned char   meter[64], b[256];
    unsigned char  *e;
    size_t          mlen;
    int64_t         start;
    int             k, p;

    (void) state;

    memset(meter, 'm', sizeof(meter));

    for (k = 0; k < 20000; k++) {
        mlen = 1 + (size_t) (rng() % 64);

        /* any time from year ~-30000 to ~+34000, even out of label range */
        start = (int64_t) (rng() % 2000000000000ULL) - 1000000000000LL;

        for (p = 0; p < QUOTA_PERIOD_COUNT; p++) {
            memset(b, CANARY, sizeof(b));
            e = quota_key_tail(b, meter, mlen, (quota_period_e) p, start);

            assert_true((size_t) (e - b) <= quota_key_tail_len(mlen));
            assert_int_equal(*e, CANARY);
        }
    }
}


/* prefix + path + tail, sized with the _len functions */
static size_t
build_key(unsigned char *buf, size_t size, const char *prefix,
    const char **names, const unsigned char **values, const size_t *lens,
    size_t depth, const char *meter, quota_period_e p, int64_t start)
{
    unsigned char  *q;
    size_t          need, i;

    need = strlen(prefix) + quota_key_tail_len(strlen(meter));

    for (i = 0; i < depth; i++) {
        need += quota_key_path_elt_len(i, strlen(names[i]), values[i],
                                       lens[i]);
    }

    assert_true(need <= size);

    memset(buf, CANARY, size);
    memcpy(buf, prefix, strlen(prefix));
    q = buf + strlen(prefix);

    for (i = 0; i < depth; i++) {
        q = quota_key_path_elt(q, i, U(names[i]), strlen(names[i]),
                               values[i], lens[i]);
    }

    q = quota_key_tail(q, U(meter), strlen(meter), p, start);

    assert_true((size_t) (q - buf) <= need);
    if ((size_t) (q - buf) < size) {
        assert_int_equal(*q, CANARY);
    }

    return (size_t) (q - buf);
}


static void
test_full_key_assembly(void **state)
{
    static const char           *names[] = { "tenant", "user" };
    static const unsigned char  *values[] = {
        (const unsigned char *) "acme", (const unsigned char *) "bob"
    };
    static const size_t          lens[] = { 4, 3 };
    static const char            want[] =
        "quota:{tenant=acme}/user=bob:llm:day:2026-11-23";

    unsigned char  key[512];
    size_t         n;

    (void) state;

    n = build_key(key, sizeof(key), "quota:", names, values, lens, 2, "llm",
                  QUOTA_PERIOD_DAY, T_DAY);

    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(key, want, n);

    /* the tenant alone, and an empty prefix */
    n = build_key(key, sizeof(key), "", names, values, lens, 1, "llm",
                  QUOTA_PERIOD_MONTH, T_MONTH);
    assert_int_equal(n, strlen("{tenant=acme}:llm:month:2026-11"));
    assert_memory_equal(key, "{tenant=acme}:llm:month:2026-11", n);
}


static void
test_distinct_scope_paths_give_distinct_keys(void **state)
{
    static const struct {
        size_t       depth;
        const char  *v0;
        size_t       l0;
        const char  *v1;
        size_t       l1;
    } paths[] = {
        { 2, "acme", 4, "bob", 3 },
        { 1, "acme}/user=bob", 14, NULL, 0 },
        { 1, "acme/user=bob", 13, NULL, 0 },
        { 1, "acme", 4, NULL, 0 },
        { 2, "acme", 4, "bob:llm:day:2026-11-23", 22 },
        { 2, "acme", 4, "bob%3A", 6 },
        { 2, "acme", 4, "bob:", 4 },
        { 2, "acme", 4, "b/user=ob", 9 },
        { 2, "acme", 4, "bob\0", 4 },
        { 2, "acme\0", 5, "bob", 3 },
        { 2, "acm", 3, "ebob", 4 },
        { 2, "", 0, "acmebob", 7 },
    };

    static const char  *names[] = { "tenant", "user" };

    const unsigned char  *values[2];
    unsigned char         keys[sizeof(paths) / sizeof(paths[0])][512];
    size_t                lens[2], klen[sizeof(paths) / sizeof(paths[0])];
    size_t                i, j, n;

    (void) state;

    n = sizeof(paths) / sizeof(paths[0]);

    for (i = 0; i < n; i++) {
        values[0] = U(paths[i].v0);
        lens[0] = paths[i].l0;
        values[1] = U(paths[i].v1 ? paths[i].v1 : "");
        lens[1] = paths[i].l1;

        klen[i] = build_key(keys[i], sizeof(keys[i]), "quota:", names,
                            values, lens, paths[i].depth, "llm",
                            QUOTA_PERIOD_DAY, T_DAY);
    }

    for (i = 0; i < n; i++) {
        for (j = i + 1; j < n; j++) {
            assert_false(klen[i] == klen[j]
                         && memcmp(keys[i], keys[j], klen[i]) == 0);
        }
    }

    /* the hash tag holds the first scope only */
    assert_memory_equal(keys[0], "quota:{tenant=acme}/", 20);
    assert_memory_equal(keys[1], "quota:{tenant=acme%7D%2Fuser%3Dbob}:", 36);
}


static void
test_name_valid_accepts(void **state)
{
    unsigned char  name[64];

    (void) state;

    assert_true(quota_key_name_valid(U("tenant"), 6));
    assert_true(quota_key_name_valid(U("team_1"), 6));
    assert_true(quota_key_name_valid(U("a-b"), 3));
    assert_true(quota_key_name_valid(U("A"), 1));
    assert_true(quota_key_name_valid(U("0"), 1));
    assert_true(quota_key_name_valid(U("_"), 1));
    assert_true(quota_key_name_valid(U("-"), 1));
    assert_true(quota_key_name_valid(U("LLM_tokens-2"), 12));

    memset(name, 'a', sizeof(name));
    assert_true(quota_key_name_valid(name, 64));

    /* only len bytes are looked at */
    assert_true(quota_key_name_valid(U("user:x"), 4));
}


static void
test_name_valid_rejects(void **state)
{
    static const char  *bad[] = {
        "a b", "a:b", "a{b", "a}b", "a/b", "a=b", "a%b", "a.b", "a@b",
        "a~b", "a\tb", "a\nb", " a", "a ", "caf\xc3\xa9", "\xff"
    };

    unsigned char  name[65];
    size_t         i;

    (void) state;

    assert_false(quota_key_name_valid(U(""), 0));

    memset(name, 'a', sizeof(name));
    assert_false(quota_key_name_valid(name, 65));

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(quota_key_name_valid(U(bad[i]), strlen(bad[i])));
    }

    assert_false(quota_key_name_valid(U("a\0b"), 3));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_path_element_at_depth_zero),
        cmocka_unit_test(test_path_element_below_depth_zero),
        cmocka_unit_test(test_path_element_escapes_its_value),
        cmocka_unit_test(test_path_element_len_is_exact),
        cmocka_unit_test(test_tail_for_every_period),
        cmocka_unit_test(test_tail_with_units_and_zones),
        cmocka_unit_test(test_tail_len_is_an_upper_bound),
        cmocka_unit_test(test_full_key_assembly),
        cmocka_unit_test(test_distinct_scope_paths_give_distinct_keys),
        cmocka_unit_test(test_name_valid_accepts),
        cmocka_unit_test(test_name_valid_rejects),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
