/*
 * Unit tests for src/quota_row.c, the display form of scope ids: what is
 * kept, what becomes %XX, uppercase, UTF-8 validity by an independent
 * decoder, that the display form is injective and that its inverse gives
 * the bytes back.
 */

#include "row_helpers.h"


#define check_display(in, in_len, want)                                      \
    do {                                                                     \
        char    *d_;                                                         \
        size_t   n_;                                                         \
                                                                             \
        d_ = display(U(in), (in_len), &n_);                                  \
        assert_int_equal(n_, strlen(want));                                  \
        assert_memory_equal(d_, (want), n_);                                 \
        free(d_);                                                            \
    } while (0)


/*
 * An independent model of the display form: decodes each code point to
 * check it (no overlongs, no surrogates, nothing over U+10FFFF) rather
 * than bounding the second byte.
 */
static size_t
ref_utf8(const unsigned char *s, size_t len)
{
    size_t    n, i;
    uint32_t  cp, min;

    if (s[0] < 0x80) {
        return 1;
    }

    if ((s[0] & 0xe0) == 0xc0) {
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

        cp = cp << 6 | (s[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return n;
}


static size_t
ref_display(char *out, const unsigned char *s, size_t len)
{
    size_t  i, n, k;

    k = 0;

    for (i = 0; i < len; /* void */) {
        if (s[i] >= 0x80) {
            n = ref_utf8(s + i, len - i);

            if (n) {
                memcpy(out + k, s + i, n);
                k += n;
                i += n;
                continue;
            }

        } else if (s[i] >= 0x20 && s[i] < 0x7f && strchr("%/=", s[i]) == NULL)
        {
            out[k++] = (char) s[i++];
            continue;
        }

        k += (size_t) sprintf(out + k, "%%%02X", s[i]);
        i++;
    }

    return k;
}


/* the inverse of the display form: %XX back to its byte, else as is */
static size_t
undisplay(unsigned char *out, const char *d, size_t len)
{
    size_t        i, k;
    unsigned int  b;
    char          hex[3];

    k = 0;

    for (i = 0; i < len; i++) {
        if (d[i] == '%') {
            assert_true(i + 2 < len);
            assert_non_null(strchr("0123456789ABCDEF", d[i + 1]));
            assert_non_null(strchr("0123456789ABCDEF", d[i + 2]));

            hex[0] = d[i + 1];
            hex[1] = d[i + 2];
            hex[2] = '\0';
            assert_int_equal(sscanf(hex, "%2x", &b), 1);

            out[k++] = (unsigned char) b;
            i += 2;

        } else {
            out[k++] = (unsigned char) d[i];
        }
    }

    return k;
}


static void
test_display_null_zero_and_no_overrun(void **state)
{
    static const unsigned char  v[] = "a%b/c=d\x01\x7f\xc3\xa9\xe2\x82\xac\xff";

    char    buf[128], full[128];
    size_t  n, size, i;

    (void) state;

    n = quota_display(NULL, 0, v, sizeof(v) - 1);
    assert_int_equal(n, strlen("a%25b%2Fc%3Dd%01%7F\xc3\xa9\xe2\x82\xac%FF"));

    assert_int_equal(quota_display(full, sizeof(full), v, sizeof(v) - 1), n);
    assert_memory_equal(full, "a%25b%2Fc%3Dd%01%7F\xc3\xa9\xe2\x82\xac%FF", n);

    for (size = 0; size <= n + 1; size++) {
        memset(buf, CANARY, sizeof(buf));

        assert_int_equal(quota_display(buf, size, v, sizeof(v) - 1), n);

        i = size < n ? size : n;
        assert_memory_equal(buf, full, i);

        for (/* void */; i < sizeof(buf); i++) {
            assert_int_equal((unsigned char) buf[i], CANARY);
        }
    }

    assert_int_equal(quota_display(NULL, 0, U(""), 0), 0);
}


static void
test_display_keeps_printable_ascii(void **state)
{
    unsigned char  c;
    char           want[4];

    (void) state;

    check_display("acme", 4, "acme");
    check_display("Tenant 42", 9, "Tenant 42");
    check_display("a-b_c.d~e:f@g+h,i;j!k*l'm(n)o[p]q{r}s|t^u`v$w&x?y#z<>",
                  53, "a-b_c.d~e:f@g+h,i;j!k*l'm(n)o[p]q{r}s|t^u`v$w&x?y#z<>");
    check_display("\"q\"\\", 4, "\"q\"\\");
    check_display("", 0, "");

    for (c = 0x20; c < 0x7f; c++) {
        if (c == '%' || c == '/' || c == '=') {
            sprintf(want, "%%%02X", c);

        } else {
            want[0] = (char) c;
            want[1] = '\0';
        }

        check_display(&c, 1, want);
    }
}


static void
test_display_escapes(void **state)
{
    unsigned int   c;
    unsigned char  b;
    char           want[4];

    (void) state;

    check_display("%", 1, "%25");
    check_display("/", 1, "%2F");
    check_display("=", 1, "%3D");
    check_display("a/b=c%d", 7, "a%2Fb%3Dc%25d");
    check_display("%25", 3, "%2525");
    check_display("acme/bob", 8, "acme%2Fbob");
    check_display("k=v", 3, "k%3Dv");

    check_display("\0", 1, "%00");
    check_display("a\nb", 3, "a%0Ab");
    check_display("\t", 1, "%09");
    check_display("\x1b", 1, "%1B");
    check_display("\x1f", 1, "%1F");
    check_display("\x7f", 1, "%7F");
    check_display("x\0y\0", 4, "x%00y%00");

    for (c = 0; c < 0x20; c++) {
        b = (unsigned char) c;
        sprintf(want, "%%%02X", c);
        check_display(&b, 1, want);
    }
}


static void
test_display_valid_utf8_is_kept(void **state)
{
    (void) state;

    check_display("\xc2\x80", 2, "\xc2\x80");                   /* U+0080 */
    check_display("caf\xc3\xa9", 5, "caf\xc3\xa9");
    check_display("\xdf\xbf", 2, "\xdf\xbf");                   /* U+07FF */
    check_display("\xe0\xa0\x80", 3, "\xe0\xa0\x80");           /* U+0800 */
    check_display("\xe2\x82\xac", 3, "\xe2\x82\xac");           /* euro */
    check_display("\xed\x9f\xbf", 3, "\xed\x9f\xbf");           /* U+D7FF */
    check_display("\xee\x80\x80", 3, "\xee\x80\x80");           /* U+E000 */
    check_display("\xef\xbf\xbf", 3, "\xef\xbf\xbf");           /* U+FFFF */
    check_display("\xf0\x90\x80\x80", 4, "\xf0\x90\x80\x80");   /* U+10000 */
    check_display("\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80");   /* emoji */
    check_display("\xf4\x8f\xbf\xbf", 4, "\xf4\x8f\xbf\xbf");   /* max */
    check_display("\xe6\x97\xa5\xe6\x9c\xac/\xc3\xa9=", 10,
                  "\xe6\x97\xa5\xe6\x9c\xac%2F\xc3\xa9%3D");
}


static void
test_display_invalid_utf8_is_escaped(void **state)
{
    unsigned int   c;
    unsigned char  b;
    char           want[4];

    (void) state;

    check_display("\xc0\x80", 2, "%C0%80");                 /* overlong NUL */
    check_display("\xc1\xbf", 2, "%C1%BF");
    check_display("\xe0\x80\x80", 3, "%E0%80%80");          /* overlong */
    check_display("\xe0\x9f\xbf", 3, "%E0%9F%BF");
    check_display("\xf0\x8f\xbf\xbf", 4, "%F0%8F%BF%BF");
    check_display("\xed\xa0\x80", 3, "%ED%A0%80");          /* surrogate */
    check_display("\xed\xbf\xbf", 3, "%ED%BF%BF");
    check_display("\xf4\x90\x80\x80", 4, "%F4%90%80%80");   /* > U+10FFFF */
    check_display("\xf5\x80\x80\x80", 4, "%F5%80%80%80");
    check_display("\x80", 1, "%80");                        /* lone tail */
    check_display("\xbf\xbf", 2, "%BF%BF");
    check_display("\xe2\x82", 2, "%E2%82");                 /* cut short */
    check_display("\xf0\x9f\x98", 3, "%F0%9F%98");
    check_display("\xe2\x82" "A", 3, "%E2%82A");
    check_display("\xe2(\xa1", 3, "%E2(%A1");
    check_display("\xc3\xa9\xc3", 3, "\xc3\xa9%C3");
    check_display("\xc3\xc3\xa9", 3, "%C3\xc3\xa9");
    check_display("\xab\xcd\xef", 3, "%AB%CD%EF");          /* uppercase */

    for (c = 0x80; c <= 0xff; c++) {
        b = (unsigned char) c;
        sprintf(want, "%%%02X", c);
        check_display(&b, 1, want);
    }
}


static void
test_display_random_against_model(void **state)
{
    char            *d, want[64 * 3];
    size_t           i, len, n, m, k;
    unsigned char    v[64], back[64];

    (void) state;

    for (i = 0; i < 50000; i++) {
        len = random_value(v, sizeof(v));

        d = display(v, len, &n);

        m = ref_display(want, v, len);
        assert_int_equal(n, m);
        assert_memory_equal(d, want, n);

        /* no "/", "=", control bytes or DEL; "%" only as %XX */
        for (k = 0; k < n; k++) {
            assert_true((unsigned char) d[k] >= 0x20);
            assert_true((unsigned char) d[k] != 0x7f);
            assert_true(d[k] != '/' && d[k] != '=');
        }

        /* the whole of it is valid UTF-8 */
        for (k = 0; k < n; k += m) {
            m = ref_utf8((unsigned char *) d + k, n - k);
            assert_true(m > 0);
        }

        /* and it decodes back to the bytes */
        assert_int_equal(undisplay(back, d, n), len);
        assert_memory_equal(back, v, len);

        free(d);
    }
}


typedef struct {
    unsigned char  in[8];
    size_t         in_len;
    char          *out;
    size_t         out_len;
} pair_t;


static int
pair_cmp(const void *a, const void *b)
{
    int            rc;
    size_t         n;
    const pair_t  *x = a, *y = b;

    n = x->out_len < y->out_len ? x->out_len : y->out_len;
    rc = memcmp(x->out, y->out, n);

    if (rc) {
        return rc;
    }

    return x->out_len < y->out_len ? -1 : x->out_len > y->out_len;
}


static void
test_display_is_injective(void **state)
{
    static const unsigned char  alphabet[] = {
        '%', '2', '5', 'F', '/', '3', 'D', '=', 'A', 0x00, 0xc3, 0xa9, 0x80,
        0xe2, 0x82, 0xac
    };

    size_t   i, k, npairs, distinct;
    pair_t  *p;

    (void) state;

    npairs = 60000;
    p = calloc(npairs, sizeof(pair_t));
    assert_non_null(p);

    /* short strings on a small alphabet: many near-collisions */
    for (i = 0; i < npairs; i++) {
        p[i].in_len = (size_t) (rng() % 7);

        for (k = 0; k < p[i].in_len; k++) {
            p[i].in[k] = i % 4 ? alphabet[rng() % sizeof(alphabet)]
                               : (unsigned char) (rng() >> 33);
        }

        p[i].out = display(p[i].in, p[i].in_len, &p[i].out_len);
    }

    qsort(p, npairs, sizeof(pair_t), pair_cmp);

    distinct = 1;

    for (i = 1; i < npairs; i++) {
        if (pair_cmp(&p[i - 1], &p[i]) != 0) {
            distinct++;
            continue;
        }

        /* the same output: the same input */
        assert_int_equal(p[i - 1].in_len, p[i].in_len);
        assert_memory_equal(p[i - 1].in, p[i].in, p[i].in_len);
    }

    /* the test saw many different inputs */
    assert_true(distinct > npairs / 2);

    for (i = 0; i < npairs; i++) {
        free(p[i].out);
    }

    free(p);

    /* the classic pairs */
    check_display("%2F", 3, "%252F");
    check_display("/", 1, "%2F");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_display_null_zero_and_no_overrun),
        cmocka_unit_test(test_display_keeps_printable_ascii),
        cmocka_unit_test(test_display_escapes),
        cmocka_unit_test(test_display_valid_utf8_is_kept),
        cmocka_unit_test(test_display_invalid_utf8_is_escaped),
        cmocka_unit_test(test_display_random_against_model),
        cmocka_unit_test(test_display_is_injective),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
