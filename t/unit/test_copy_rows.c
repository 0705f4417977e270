/*
 * Unit tests for src/quota_copy.c: a row quota_row_json() writes becomes
 * the exact COPY line (columns in order, NULLs, arrays, limits as JSON),
 * escapes survive both layers (JSON unescaped, then array and COPY
 * escaping), a field missing or repeated reads as jsonb_to_recordset
 * reads it, what the JSON path must take is left to it (0), and random
 * rows never write past quota_copy_max().
 */

#include "row_helpers.h"

#include "quota_copy.h"


static size_t
copy(char *line, size_t size, const char *json)
{
    size_t  n, len;

    len = strlen(json);
    assert_true(quota_copy_max(len) < size);

    memset(line, CANARY, size);
    n = quota_copy_row((unsigned char *) line, U(json), len);

    if (n) {
        assert_true(n <= quota_copy_max(len));
        assert_int_equal((unsigned char) line[n], CANARY);
        line[n] = '\0';
    }

    return n;
}


static void
test_contract_row(void **state)
{
    char  line[4096];

    (void) state;

    assert_true(copy(line, sizeof(line),
        "{\"request_id\":\"web-1:7f3a\",\"ts_ms\":1763911800123,"
        "\"host\":\"web-1\",\"resource_type\":\"llm\","
        "\"scope_names\":[\"tenant\",\"user\"],\"scope_ids\":[\"acme\",\"bob\"],"
        "\"decision\":\"allowed\",\"estimated_micros\":50000,"
        "\"actual_micros\":42000,\"upstream_status\":200,\"http_status\":200,"
        "\"model\":null,\"prompt_tokens\":null,\"completion_tokens\":null,"
        "\"cached_tokens\":null,\"tokens\":1830,\"epoch\":1763911790000,"
        "\"limits\":[{\"depth\":1,\"period\":\"day\",\"limit_micros\":50000000}],"
        "\"alerts\":[80,90,100]}"));

    assert_string_equal(line,
        "web-1:7f3a\t1763911800123\tweb-1\tllm\t{\"tenant\",\"user\"}\t"
        "{\"acme\",\"bob\"}\tallowed\t50000\t42000\t200\t200\t\\N\t\\N\t\\N\t"
        "\\N\t[{\"depth\":1,\"period\":\"day\",\"limit_micros\":50000000}]\t"
        "1763911790000\t{80,90,100}\t1830\n");
}


static void
test_escapes(void **state)
{
    char  line[4096];

    (void) state;

    /* a quote and a backslash in an id: array-escaped, then COPY-escaped */
    assert_true(copy(line, sizeof(line),
        "{\"request_id\":\"a\\tb\\\\c\",\"scope_ids\":[\"x\\\"y\",\"z\\\\w\"],"
        "\"model\":\"caf\\u00e9 \\ud83d\\ude00\\n\","
        "\"limits\":[{\"tz\":\"A\\\\B\"}]}"));

    assert_string_equal(line,
        "a\\tb\\\\c\t\\N\t\\N\t\\N\t\\N\t{\"x\\\\\"y\",\"z\\\\\\\\w\"}\t"
        "\\N\t\\N\t\\N\t\\N\t\\N\tcaf\xc3\xa9 \xf0\x9f\x98\x80\\n\t"
        "\\N\t\\N\t\\N\t[{\"tz\":\"A\\\\\\\\B\"}]\t\\N\t\\N\t\\N\n");
}


static void
test_missing_repeated_unknown(void **state)
{
    char  line[4096];

    (void) state;

    /* the last of a repeated key, as jsonb keeps it; unknown keys skipped */
    assert_true(copy(line, sizeof(line),
        " { \"request_id\" : \"r1\" , \"x\" : {\"a\":[1,{\"b\":null}]},"
        " \"request_id\":\"r2\", \"alerts\":[], \"scope_names\":null,"
        " \"ts_ms\":\"17\", \"host\":true } "));

    assert_string_equal(line,
        "r2\t17\ttrue\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"
        "\\N\t\\N\t\\N\t\\N\t{}\t\\N\n");
}


static void
test_left_to_json(void **state)
{
    size_t       i;
    char         line[4096];
    const char  *rows[] = {
        "",
        "[]",
        "{\"request_id\":\"a\\u0000b\"}",           /* text holds no NUL */
        "{\"request_id\":\"\\udc00\"}",             /* a lone surrogate */
        "{\"request_id\":[\"a\"]}",                 /* an array in text */
        "{\"request_id\":{\"a\":1}}",
        "{\"scope_ids\":\"{a}\"}",                   /* a string as array */
        "{\"scope_ids\":[[\"a\"]]}",                 /* nested */
        "{\"scope_ids\":[true]}",
        "{\"re\\u0071uest_id\":\"a\"}",              /* a key with an escape */
        "{\"request_id\":\"a\"",                     /* cut short */
        "{\"request_id\":\"a\"}x",
        "{\"request_id\":\"a\",}",
        "{\"request_id\":\"a\" \"host\":\"b\"}",
        "{\"request_id\":\"a\\q\"}",
        "{\"request_id\":nul}",
        "{\"request_id\":\"a\tb\"}"                  /* a raw tab */
    };

    (void) state;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        assert_int_equal(copy(line, sizeof(line), rows[i]), 0);
    }
}


/* rows quota_row_json() writes, of random scope ids: one line each */
static void
test_random_rows(void **state)
{
    int                i, k;
    char              *json, *line;
    size_t             n, len;
    unsigned char      id[2][40];
    quota_row_t        row;
    quota_scope_ref_t  scopes[2];

    (void) state;

    for (i = 0; i < 2000; i++) {
        for (k = 0; k < 2; k++) {
            n = random_value(id[k], sizeof(id[k]));
            scopes[k] = scope(k ? "user" : "tenant", id[k], n);
        }

        row = contract(scopes, 2);

        json = row_json(&row, &len);
        line = malloc(quota_copy_max(len) + 1);
        assert_non_null(line);
        memset(line, CANARY, quota_copy_max(len) + 1);

        n = quota_copy_row((unsigned char *) line, U(json), len);

        assert_true(n > 0 && n <= quota_copy_max(len));
        assert_int_equal(line[n - 1], '\n');
        assert_int_equal(memchr(line, '\n', n) - (void *) line, n - 1);
        assert_int_equal((unsigned char) line[quota_copy_max(len)], CANARY);

        free(line);
        free(json);
    }
}


/*
 * Strings are scanned eight bytes at a time: a quote, an escape or a
 * control byte at every offset of a word, and in the bytes after the
 * last whole word, is found where it is
 */
static void
test_every_offset(void **state)
{
    static const struct {
        const char  *json;          /* what follows the run, in the JSON */
        const char  *copy;          /* in the line; NULL: left to JSON */
    } tails[] = {
        { "\"",          "" },
        { "\\\"x\"",     "\"x" },
        { "\\\\x\"",     "\\\\x" },
        { "\\t\"",       "\\t" },
        { "\\u00e9\"",   "\xc3\xa9" },
        { "\x01\"",      NULL },
    };

    char      json[256], line[1024], want[256], run[32];
    size_t    k, t, n;

    (void) state;

    for (k = 0; k < 20; k++) {
        memset(run, 'a', k);
        run[k] = '\0';

        for (t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
            snprintf(json, sizeof(json),
                     "{\"request_id\":\"%s%s,\"limits\":[{\"tz\":\"%s\\\\\"}]}",
                     run, tails[t].json, run);

            n = copy(line, sizeof(line), json);

            if (tails[t].copy == NULL) {
                assert_int_equal(n, 0);
                continue;
            }

            snprintf(want, sizeof(want),
                     "%s%s\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t"
                     "\\N\t\\N\t\\N\t\\N\t[{\"tz\":\"%s\\\\\\\\\"}]\t\\N\t\\N\t\\N\n",
                     run, tails[t].copy, run);

            assert_string_equal(line, want);
        }
    }
}


/* a queued row: its line alone, its JSON alone, or its JSON, a newline
 * and its line */
static void
test_split(void **state)
{
    static const char  both[] = "{\"request_id\":\"a\"}\na\t\\N\n";
    static const char  json[] = "{\"request_id\":\"a\"}";
    static const char  torn[] = "{\"request_id\":\"a\"}\na\t\\N";

    size_t                n, len;
    const unsigned char  *line;

    (void) state;

    n = quota_copy_split(U(both), sizeof(both) - 1, &line, &len);
    assert_int_equal(n, sizeof(json) - 1);
    assert_non_null(line);
    assert_int_equal(len, 5);
    assert_memory_equal(line, "a\t\\N\n", 5);

    n = quota_copy_split(U(json), sizeof(json) - 1, &line, &len);
    assert_int_equal(n, sizeof(json) - 1);
    assert_null(line);
    assert_int_equal(len, 0);

    /* a line without its newline is no line: the JSON makes one */
    n = quota_copy_split(U(torn), sizeof(torn) - 1, &line, &len);
    assert_int_equal(n, sizeof(json) - 1);
    assert_null(line);

    n = quota_copy_split(U("{}\n"), 3, &line, &len);
    assert_int_equal(n, 2);
    assert_null(line);

    /* a line alone, as this nginx queues it: no JSON */
    n = quota_copy_split(U("a\t\\N\n"), 5, &line, &len);
    assert_int_equal(n, 0);
    assert_non_null(line);
    assert_int_equal(len, 5);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_contract_row),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_missing_repeated_unknown),
        cmocka_unit_test(test_left_to_json),
        cmocka_unit_test(test_random_rows),
        cmocka_unit_test(test_every_offset),
        cmocka_unit_test(test_split),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
