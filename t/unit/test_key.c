/*
 * Unit tests for src/quota_key.c: percent-escaping of scope values (the
 * unreserved set kept, every other byte as %XX in uppercase hex, the
 * escaped length, no separator left in the output, injectivity on
 * tricky pairs, exhaustively on all strings of up to 2 bytes and on
 * random byte strings), scope path elements at depth 0 and below, the
 * key tail for every period and its length bound, the full key
 * "<prefix>{tenant=acme}/user=bob:llm:day:2026-11-23", distinct scope
 * paths giving distinct keys, and scope/meter name validation.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quota_key.h"


#define U(s)  ((const unsigned char *) (s))

#define CANARY  0xA5

/* 2026-11-23T14:05:00Z and the day and week (a Monday) that hold it */
#define T_MINUTE  1795442700LL
#define T_HOUR    1795442400LL
#define T_DAY     1795392000LL
#define T_MONTH   1793491200LL


/* escaping len bytes of value gives exactly want */
#define check_escape(value, len, want)                                       \
    do {                                                                     \
        unsigned char   b_[1024];                                            \
        unsigned char  *e_;                                                  \
                                                                             \
        memset(b_, CANARY, sizeof(b_));                                      \
        e_ = quota_key_escape(b_, U(value), (len));                          \
        assert_int_equal(e_ - b_, strlen(want));                             \
        assert_memory_equal(b_, (want), strlen(want));                       \
        assert_int_equal(quota_key_escaped_len(U(value), (len)),             \
                         strlen(want));                                      \
        assert_int_equal(*e_, CANARY);                                       \
    } while (0)


static uint64_t  rng_state = 0xb7e151628aed2a6bULL;

static uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;

    return rng_state * 0x2545f4914f6cdd1dULL;
}


static int
is_unreserved(unsigned c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
           || c == '~' || c == '@';
}


static int
hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;   /* lowercase hex is not what the encoder writes */
}


/* the inverse of the escape, strict: returns the decoded length or -1 */
static long
unescape(unsigned char *dst, const unsigned char *s, size_t len)
{
    int     hi, lo;
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] != '%') {
            if (!is_unreserved(s[i])) {
                return -1;
            }

            dst[n++] = s[i];
            continue;
        }

        if (i + 2 >= len) {
            return -1;
        }

        hi = hex_value(s[i + 1]);
        lo = hex_value(s[i + 2]);

        if (hi < 0 || lo < 0) {
            return -1;
        }

        /* a byte that could have been written plain never is escaped */
        if (is_unreserved((unsigned) (hi * 16 + lo))) {
            return -1;
        }

        dst[n++] = (unsigned char) (hi * 16 + lo);
        i += 2;
    }

    return (long) n;
}


/* the escaped form of value, into out (at least 3 * len bytes) */
static size_t
escape(unsigned char *out, const unsigned char *value, size_t len)
{
    size_t  n;

    n = (size_t) (quota_key_escape(out, value, len) - out);
    assert_int_equal(n, quota_key_escaped_len(value, len));

    return n;
}


static int
escaped_equal(const unsigned char *a, size_t alen, const unsigned char *b,
    size_t blen)
{
    unsigned char  ea[256], eb[256];
    size_t         na, nb;

    na = escape(ea, a, alen);
    nb = escape(eb, b, blen);

    return na == nb && memcmp(ea, eb, na) == 0;
}


static void
test_escape_keeps_unreserved_bytes(void **state)
{
    static const char  plain[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~@";

    (void) state;

    check_escape(plain, sizeof(plain) - 1, plain);
    check_escape("acme", 4, "acme");
    check_escape("bob@example.com", 15, "bob@example.com");
    check_escape("", 0, "");
}


static void
test_escape_encodes_separators_and_special_bytes(void **state)
{
    (void) state;

    check_escape("%", 1, "%25");
    check_escape("{", 1, "%7B");
    check_escape("}", 1, "%7D");
    check_escape("/", 1, "%2F");
    check_escape("=", 1, "%3D");
    check_escape(":", 1, "%3A");
    check_escape(" ", 1, "%20");
    check_escape("\0", 1, "%00");
    check_escape("\xff", 1, "%FF");
    check_escape("\xab", 1, "%AB");
    check_escape("\x7f", 1, "%7F");
    check_escape("\x80", 1, "%80");
    check_escape("+", 1, "%2B");
    check_escape("\r\n", 2, "%0D%0A");
    check_escape("\"'\\", 3, "%22%27%5C");
    check_escape("a b/c", 5, "a%20b%2Fc");
    check_escape("{tenant=acme}", 13, "%7Btenant%3Dacme%7D");
    check_escape("caf\xc3\xa9", 5, "caf%C3%A9");
    check_escape("a\0b", 3, "a%00b");
}


static void
test_escape_every_byte_value(void **state)
{
    char           want[4];
    unsigned char  in[1];
    unsigned       c;

    (void) state;

    for (c = 0; c < 256; c++) {
        in[0] = (unsigned char) c;

        if (is_unreserved(c)) {
            want[0] = (char) c;
            want[1] = '\0';

        } else {
            snprintf(want, sizeof(want), "%%%02X", c);
        }

        check_escape(in, 1, want);
    }
}


static void
test_escaped_len_matches_written_length(void **state)
{
    unsigned char   in[64], out[3 * 64 + 1];
    unsigned char  *end;
    size_t          len, i;
    int             k;

    (void) state;

    for (k = 0; k < 100000; k++) {
        len = (size_t) (rng() % sizeof(in));

        for (i = 0; i < len; i++) {
            in[i] = (unsigned char) rng();
        }

        memset(out, CANARY, sizeof(out));
        end = quota_key_escape(out, in, len);

        assert_int_equal(end - out, quota_key_escaped_len(in, len));
        assert_true((size_t) (end - out) >= len);
        assert_true((size_t) (end - out) <= 3 * len);
        assert_int_equal(*end, CANARY);
    }
}


static void
test_escaped_output_holds_no_separator(void **state)
{
    unsigned char  in[32], out[3 * 32], dec[32];
    size_t         len, n, i;
    long           d;
    int            k;

    (void) state;

    for (k = 0; k < 100000; k++) {
        len = (size_t) (rng() % sizeof(in));

        for (i = 0; i < len; i++) {
            in[i] = (unsigned char) rng();
        }

        n = escape(out, in, len);

        for (i = 0; i < n; i++) {
            assert_null(memchr("{}/=:", out[i], 5));
            assert_true(out[i] == '%' || is_unreserved(out[i]));
        }

        /* and it decodes back to the input: the escape is injective */
        d = unescape(dec, out, n);
        assert_int_equal(d, (long) len);
        assert_memory_equal(dec, in, len);
    }
}


static void
test_escape_distinguishes_tricky_pairs(void **state)
{
    static const struct {
        const char  *a;
        size_t       alen;
        const char  *b;
        size_t       blen;
    } pairs[] = {
        { "a/b", 3, "a%2Fb", 5 },
        { "a%2Fb", 5, "a%252Fb", 7 },
        { "a=b", 3, "a", 1 },
        { "a=b", 3, "a%3Db", 5 },
        { "a", 1, "a\0", 2 },
        { "\0", 1, "", 0 },
        { "\0", 1, "%00", 3 },
        { "\0\0", 2, "\0", 1 },
        { "{x}", 3, "x", 1 },
        { "{x}", 3, "%7Bx%7D", 7 },
        { "acme}/user=bob", 14, "acme", 4 },
        { "a:b", 3, "a%3Ab", 5 },
        { "a b", 3, "a+b", 3 },
        { "a b", 3, "a%20b", 5 },
        { "%", 1, "%25", 3 },
        { "\xff", 1, "%FF", 3 },
        { "\xff", 1, "\xc3\xbf", 2 },
        { "A", 1, "a", 1 },
        { "%41", 3, "A", 1 },
        { "a.b", 3, "a%2Eb", 5 },
    };

    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        if (escaped_equal(U(pairs[i].a), pairs[i].alen, U(pairs[i].b),
                          pairs[i].blen))
        {
            print_error("pair %zu escapes to the same key value\n", i);
            fail();
        }
    }
}


typedef struct {
    unsigned char  in[8];
    size_t         in_len;
    unsigned char  out[24];
    size_t         out_len;
} escaped_t;


static int
cmp_escaped(const void *a, const void *b)
{
    const escaped_t  *x = a, *y = b;
    size_t            n;
    int               r;

    n = x->out_len < y->out_len ? x->out_len : y->out_len;
    r = memcmp(x->out, y->out, n);

    if (r != 0) {
        return r;
    }

    return x->out_len < y->out_len ? -1 : (x->out_len > y->out_len);
}


static void
check_no_collision(escaped_t *e, size_t n)
{
    size_t  i;

    qsort(e, n, sizeof(escaped_t), cmp_escaped);

    for (i = 1; i < n; i++) {
        if (cmp_escaped(&e[i - 1], &e[i]) == 0) {
            /* equal outputs are only allowed for equal inputs */
            assert_int_equal(e[i - 1].in_len, e[i].in_len);
            assert_memory_equal(e[i - 1].in, e[i].in, e[i].in_len);
        }
    }
}


static void
test_escape_injective_on_all_strings_up_to_two_bytes(void **state)
{
    escaped_t  *e;
    size_t      n, a, b;

    (void) state;

    e = calloc(1 + 256 + 256 * 256, sizeof(escaped_t));
    assert_non_null(e);

    n = 0;
    e[n].in_len = 0;
    e[n].out_len = escape(e[n].out, e[n].in, 0);
    n++;

    for (a = 0; a < 256; a++) {
        e[n].in[0] = (unsigned char) a;
        e[n].in_len = 1;
        e[n].out_len = escape(e[n].out, e[n].in, 1);
        n++;

        for (b = 0; b < 256; b++) {
            e[n].in[0] = (unsigned char) a;
            e[n].in[1] = (unsigned char) b;
            e[n].in_len = 2;
            e[n].out_len = escape(e[n].out, e[n].in, 2);
            n++;
        }
    }

    assert_int_equal(n, 1 + 256 + 256 * 256);

    /* all inputs are distinct: any equal neighbours fail */
    check_no_collision(e, n);

    free(e);
}


static void
test_escape_injective_on_random_short_strings(void **state)
{
    /* bytes that take part in the layout or in the escape itself */
    static const unsigned char  alpha[] = "%{}/=:aAF2Dd0 \0\xff@.~";

    escaped_t  *e;
    size_t      n, i, k;

    (void) state;

    n = 300000;
    e = calloc(n, sizeof(escaped_t));
    assert_non_null(e);

    for (i = 0; i < n; i++) {
        e[i].in_len = (size_t) (rng() % 9);

        for (k = 0; k < e[i].in_len; k++) {
            if (rng() % 4 == 0) {
                e[i].in[k] = (unsigned char) rng();

            } else {
                e[i].in[k] = alpha[rng() % (sizeof(alpha) - 1)];
            }
        }

        e[i].out_len = escape(e[i].out, e[i].in, e[i].in_len);
    }

    check_no_collision(e, n);

    free(e);
}


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
        cmocka_unit_test(test_escape_keeps_unreserved_bytes),
        cmocka_unit_test(test_escape_encodes_separators_and_special_bytes),
        cmocka_unit_test(test_escape_every_byte_value),
        cmocka_unit_test(test_escaped_len_matches_written_length),
        cmocka_unit_test(test_escaped_output_holds_no_separator),
        cmocka_unit_test(test_escape_distinguishes_tricky_pairs),
        cmocka_unit_test(test_escape_injective_on_all_strings_up_to_two_bytes),
        cmocka_unit_test(test_escape_injective_on_random_short_strings),
        cmocka_unit_test(test_path_element_at_depth_zero),
        cmocka_unit_test(test_path_element_below_depth_zero),
        cmocka_unit_test(test_path_element_escapes_its_value),
        cmocka_unit_test(test_path_element_len_is_exact),
        cmocka_unit_test(test_tail_for_every_period),
        cmocka_unit_test(test_tail_len_is_an_upper_bound),
        cmocka_unit_test(test_full_key_assembly),
        cmocka_unit_test(test_distinct_scope_paths_give_distinct_keys),
        cmocka_unit_test(test_name_valid_accepts),
        cmocka_unit_test(test_name_valid_rejects),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
