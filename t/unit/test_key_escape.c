/*
 * Unit tests for src/quota_key.c, the escape: percent-escaping of scope
 * values (the unreserved set kept, every other byte as %XX in uppercase
 * hex, the escaped length, no separator left in the output, injectivity
 * on tricky pairs, exhaustively on all strings of up to 2 bytes and on
 * random byte strings).
 */

#include "key_helpers.h"


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
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
