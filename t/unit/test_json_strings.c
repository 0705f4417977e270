/*
 * Unit tests for src/quota_json.c, JSON string escaping of scope ids:
 * quotes, backslashes, control bytes and NUL, valid UTF-8 kept, invalid
 * UTF-8 replaced by U+FFFD byte by byte, the literal bytes written, and
 * random bytes checked against an independent UTF-8 decoder.  Bodies are
 * parsed back with jansson (json_loadb, flags 0 unless a NUL byte needs
 * JSON_ALLOW_NUL).
 */

#include "json_helpers.h"


#define UNIT_RNG_SEED  0x13198a2e03707344ULL
#include "unit_helpers.h"


/*
 * An independent model of what a scope id becomes: valid UTF-8 kept,
 * each byte that does not start a valid sequence becomes U+FFFD.  It
 * decodes the code point and checks its range rather than using byte
 * tables, so it does not share a mistake with the code under test.
 */
static size_t
model_utf8_seq(const unsigned char *s, size_t len)
{
    size_t    n, i;
    uint32_t  cp, min;

    if (s[0] < 0x80) {
        return 1;

    } else if ((s[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = s[0] & 0x1f;
        min = 0x80;

    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = s[0] & 0x0f;
        min = 0x800;

    } else if ((s[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = s[0] & 0x07;
        min = 0x10000;

    } else {
        return 0;
    }

    if (len < n) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }

        cp = (cp << 6) | (s[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return n;
}


static size_t
model_decoded(unsigned char *dst, const unsigned char *s, size_t len)
{
    size_t  i, n, out;

    out = 0;

    for (i = 0; i < len; /* void */) {
        n = model_utf8_seq(s + i, len - i);

        if (n == 0) {
            memcpy(dst + out, FFFD, 3);
            out += 3;
            i++;

        } else {
            memcpy(dst + out, s + i, n);
            out += n;
            i += n;
        }
    }

    return out;
}


/*
 * the denial for a tenant whose id is the len bytes of id parses with
 * flags and carries want as scopeId and inside the message
 */
static void
check_scope_id(const void *id, size_t len, const char *want, size_t want_len,
    size_t flags)
{
    char               *body, *msg;
    size_t              blen, mlen;
    quota_scope_ref_t   path[1];
    quota_denial_t      d;
    json_t             *j, *q, *m;

    path[0] = scope("tenant", id, len);
    d = product_denial(path, 1);
    body = denial(&d, &blen);

    /* one line: a body with a raw newline could not go into SSE data */
    assert_null(memchr(body, '\n', blen - 1));

    j = load(body, blen, flags);
    q = get(get(j, "error"), "details");

    m = get(q, "scopeId");
    assert_true(json_is_string(m));
    assert_int_equal(json_string_length(m), want_len);
    assert_memory_equal(json_string_value(m), want, want_len);

    mlen = strlen("llm quota exceeded for tenant ") + want_len
           + strlen(": limit $50.00 per day, spent $48.50, requested $2.00");
    msg = malloc(mlen);
    assert_non_null(msg);
    memcpy(msg, "llm quota exceeded for tenant ", 30);
    memcpy(msg + 30, want, want_len);
    memcpy(msg + 30 + want_len,
           ": limit $50.00 per day, spent $48.50, requested $2.00",
           mlen - 30 - want_len);

    m = get(j, "message");
    assert_int_equal(json_string_length(m), mlen);
    assert_memory_equal(json_string_value(m), msg, mlen);

    free(msg);
    json_decref(j);
    free(body);
}


static void
test_scope_id_with_quotes_and_backslashes(void **state)
{
    (void) state;

    check_scope_id("a\"b", 3, "a\"b", 3, 0);
    check_scope_id("a\\b", 3, "a\\b", 3, 0);
    check_scope_id("\\\"", 2, "\\\"", 2, 0);
    check_scope_id("\"}],\"x\":{\"", 10, "\"}],\"x\":{\"", 10, 0);
    check_scope_id("\\u0000", 6, "\\u0000", 6, 0);
    check_scope_id("a/b", 3, "a/b", 3, 0);
    check_scope_id("", 0, "", 0, 0);
}


static void
test_scope_id_with_control_bytes(void **state)
{
    unsigned char  id[3];
    unsigned       c;

    (void) state;

    /* every control byte but NUL, and DEL, with jansson's default flags */
    for (c = 1; c < 0x20; c++) {
        id[0] = 'a';
        id[1] = (unsigned char) c;
        id[2] = 'b';
        check_scope_id(id, 3, (const char *) id, 3, 0);
    }

    check_scope_id("\x7f", 1, "\x7f", 1, 0);
    check_scope_id("\r\n\t", 3, "\r\n\t", 3, 0);
}


static void
test_scope_id_with_nul_byte(void **state)
{
    char    buf[32];
    size_t  n;

    (void) state;

    /*
     * NUL is valid JSON as \u0000, but jansson and PostgreSQL's jsonb
     * refuse it by default: it becomes U+FFFD like invalid UTF-8
     */
    n = quota_json_string(buf, sizeof(buf), U("a\0b"), 3);
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "\"a\\ufffdb\"", 10);

    check_scope_id("a\0b", 3, "a\xef\xbf\xbd" "b", 5, 0);
    check_scope_id("\0", 1, "\xef\xbf\xbd", 3, 0);
}


static void
test_scope_id_valid_utf8_is_kept(void **state)
{
    static const char  *ok[] = {
        "caf\xc3\xa9",                      /* é, 2 bytes */
        "\xe6\x97\xa5\xe6\x9c\xac",         /* 日本, 3 bytes each */
        "\xf0\x9f\x98\x80",                 /* U+1F600, 4 bytes */
        "\xc2\x80",                         /* U+0080, lowest 2-byte */
        "\xdf\xbf",                         /* U+07FF */
        "\xe0\xa0\x80",                     /* U+0800, lowest 3-byte */
        "\xed\x9f\xbf",                     /* U+D7FF, below surrogates */
        "\xee\x80\x80",                     /* U+E000, above surrogates */
        "\xef\xbf\xbf",                     /* U+FFFF */
        "\xef\xbf\xbd",                     /* U+FFFD itself */
        "\xf0\x90\x80\x80",                 /* U+10000, lowest 4-byte */
        "\xf4\x8f\xbf\xbf",                 /* U+10FFFF, the highest */
        "a\xc3\xa9z\xf0\x9f\x98\x80!"
    };

    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        check_scope_id(ok[i], strlen(ok[i]), ok[i], strlen(ok[i]), 0);
    }
}


static void
test_scope_id_invalid_utf8_becomes_replacement(void **state)
{
    static const struct {
        const char  *in;
        size_t       in_len;
        const char  *want;
    } cases[] = {
        { "\xff", 1, FFFD },
        { "a\xff" "b", 3, "a" FFFD "b" },
        { "\xfe\xff", 2, FFFD FFFD },
        { "\x80", 1, FFFD },                              /* lone trail */
        { "\xbf", 1, FFFD },
        { "\xc3", 1, FFFD },                              /* truncated */
        { "\xe2\x82", 2, FFFD FFFD },
        { "\xe2\x82" "x", 3, FFFD FFFD "x" },
        { "\xf0\x9f\x98", 3, FFFD FFFD FFFD },
        { "\xe2\x82\x41", 3, FFFD FFFD "A" },             /* bad third */
        { "\xc0\x80", 2, FFFD FFFD },                     /* overlong NUL */
        { "\xc1\xbf", 2, FFFD FFFD },
        { "\xe0\x80\x80", 3, FFFD FFFD FFFD },
        { "\xe0\x9f\xbf", 3, FFFD FFFD FFFD },
        { "\xf0\x80\x80\x80", 4, FFFD FFFD FFFD FFFD },
        { "\xf0\x8f\xbf\xbf", 4, FFFD FFFD FFFD FFFD },
        { "\xed\xa0\x80", 3, FFFD FFFD FFFD },            /* surrogates */
        { "\xed\xbf\xbf", 3, FFFD FFFD FFFD },
        { "\xed\xa0\xbd\xed\xb8\x80", 6,
          FFFD FFFD FFFD FFFD FFFD FFFD },
        { "\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD },   /* > U+10FFFF */
        { "\xf5\x80\x80\x80", 4, FFFD FFFD FFFD FFFD },
        { "\xf8\x88\x80\x80\x80", 5, FFFD FFFD FFFD FFFD FFFD },
        { "caf\xe9", 4, "caf" FFFD },                     /* Latin-1 */
        { "\xc3\xa9\xff\xc3\xa9", 5, "\xc3\xa9" FFFD "\xc3\xa9" },
    };

    unsigned char  model[64];
    size_t         i, n;

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* the expectation agrees with the independent model */
        n = model_decoded(model, U(cases[i].in), cases[i].in_len);
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(model, cases[i].want, n);

        check_scope_id(cases[i].in, cases[i].in_len, cases[i].want,
                       strlen(cases[i].want), 0);
    }
}


static void
test_json_string_literal_bytes(void **state)
{
    static const struct {
        const char  *in;
        size_t       in_len;
        const char  *want;
    } cases[] = {
        { "", 0, "\"\"" },
        { "acme", 4, "\"acme\"" },
        { "\"", 1, "\"\\\"\"" },
        { "\\", 1, "\"\\\\\"" },
        { "/", 1, "\"/\"" },
        { "\x01", 1, "\"\\u0001\"" },
        { "\x1f", 1, "\"\\u001f\"" },
        { "\n", 1, "\"\\u000a\"" },
        { "\x7f", 1, "\"\\u007f\"" },
        { "\xff", 1, "\"\\ufffd\"" },
        { "\xc0\x80", 2, "\"\\ufffd\\ufffd\"" },
        { "\xc3\xa9", 2, "\"\xc3\xa9\"" },
    };

    char    buf[64];
    size_t  i, n;

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(buf, CANARY, sizeof(buf));
        n = quota_json_string(buf, sizeof(buf), U(cases[i].in),
                              cases[i].in_len);
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(buf, cases[i].want, n);
        assert_int_equal((unsigned char) buf[n], CANARY);
    }
}


static void
test_random_scope_ids_always_parse(void **state)
{
    unsigned char  id[48], want[48 * 3];
    size_t         len, n, i;
    int            k;

    (void) state;

    for (k = 0; k < 20000; k++) {
        len = (size_t) (rng() % sizeof(id));

        for (i = 0; i < len; i++) {
            /* skewed to high bytes, so that sequences form by chance */
            do {
                id[i] = (unsigned char) (rng() % 3 ? 0x80 + rng() % 0x80
                                                   : rng());
            } while (id[i] == 0);
        }

        n = model_decoded(want, id, len);
        check_scope_id(id, len, (const char *) want, n, 0);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_scope_id_with_quotes_and_backslashes),
        cmocka_unit_test(test_scope_id_with_control_bytes),
        cmocka_unit_test(test_scope_id_with_nul_byte),
        cmocka_unit_test(test_scope_id_valid_utf8_is_kept),
        cmocka_unit_test(test_scope_id_invalid_utf8_becomes_replacement),
        cmocka_unit_test(test_json_string_literal_bytes),
        cmocka_unit_test(test_random_scope_ids_always_parse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
