/*
 * Unit tests for quota_row_copy() (src/quota_row.c): the COPY line a row
 * writes of itself is, byte for byte, the line quota_copy_row() makes of
 * the row's JSON, for the contract row, for rows with every field set or
 * absent, and for random ids, hosts, meters and models full of odd bytes;
 * it never writes past quota_row_copy_max(), and a short buffer still
 * gets the length the whole line needs.  quota_copy_json() turns the line
 * back into JSON that jansson reads and that gives the same line again.
 */

#include "row_helpers.h"

#include "quota_copy.h"


/* both lines of the row, compared; returns the line's length */
static size_t
same_line(const quota_row_t *r)
{
    char     *json, *want, *line, *back;
    size_t    len, n, m, max;
    json_t   *loaded;

    json = row_json(r, &len);

    want = malloc(quota_copy_max(len));
    assert_non_null(want);
    n = quota_copy_row((unsigned char *) want, U(json), len);
    assert_true(n > 0);

    max = quota_row_copy_max(r);
    assert_true(n <= max);

    line = malloc(max + 1);
    assert_non_null(line);
    memset(line, CANARY, max + 1);

    assert_int_equal(quota_row_copy(NULL, 0, r), n);
    m = quota_row_copy(line, max, r);
    assert_int_equal(m, n);
    assert_memory_equal(line, want, n);
    assert_int_equal((unsigned char) line[n], CANARY);

    /* cut short: the bytes that fit, and the whole length */
    memset(line, CANARY, max + 1);
    assert_int_equal(quota_row_copy(line, n / 2, r), n);
    assert_memory_equal(line, want, n / 2);
    assert_int_equal((unsigned char) line[n / 2], CANARY);

    /* and back: the JSON of the line is JSON, and gives the line again */
    back = malloc(quota_copy_json_max(n) + 1);
    assert_non_null(back);
    memset(back, CANARY, quota_copy_json_max(n) + 1);
    len = quota_copy_json(back, quota_copy_json_max(n), U(want), n);
    assert_true(len <= quota_copy_json_max(n));
    assert_int_equal((unsigned char) back[len], CANARY);
    assert_int_equal(quota_copy_json(NULL, 0, U(want), n), len);

    loaded = json_loadb(back, len, 0, NULL);
    assert_non_null(loaded);
    json_decref(loaded);

    m = quota_copy_row((unsigned char *) line, U(back), len);
    assert_int_equal(m, n);
    assert_memory_equal(line, want, n);

    free(back);
    free(line);
    free(want);
    free(json);

    return n;
}


static void
test_contract_row(void **state)
{
    quota_row_t        r;
    quota_scope_ref_t  scopes[2];

    (void) state;

    scopes[0] = scope("tenant", "acme", 4);
    scopes[1] = scope("user", "bob", 3);

    r = contract(scopes, 2);
    same_line(&r);
}


static void
test_every_field(void **state)
{
    quota_row_t        r;
    quota_scope_ref_t  scopes[3];
    quota_row_limit_t  limits[2] = {
        { 1, QUOTA_PERIOD_DAY, 5000000, 4000000, QUOTA_UNIT_USD, "Asia/Tokyo" },
        { 3, QUOTA_PERIOD_MINUTE, 100, -1, QUOTA_UNIT_TOK, NULL },
    };

    (void) state;

    scopes[0] = scope("tenant", "ac\"me\\", 6);
    scopes[1] = scope("team", "a/b=c%d", 7);
    scopes[2] = scope("user", "\xc3\xa9t\xff\t", 5);

    r = contract(scopes, 3);
    r.model = U("gpt-4o\t\"mini\"\\\n\r\x01\x7f\x00z");
    r.model_len = 20;
    r.prompt_tokens = 1200;
    r.completion_tokens = 0;
    r.cached_tokens = 300;
    r.tokens = 1500;
    r.epoch = 1763911790000LL;
    r.upstream_status = 0;
    r.limits = limits;
    r.nlimits = 2;
    r.decision = "denied";
    same_line(&r);

    /* and with nothing: no scopes, limits, alerts, model, tokens */
    r = contract(NULL, 0);
    r.nlimits = 0;
    r.nalerts = 0;
    r.request_id_len = 0;
    r.host = NULL;
    r.ts_ms = -5;
    same_line(&r);
}


static void
test_random_rows(void **state)
{
    int                i, k;
    size_t             n[6];
    unsigned char      v[6][48];
    quota_row_t        r;
    quota_scope_ref_t  scopes[2];

    (void) state;

    for (i = 0; i < 5000; i++) {
        for (k = 0; k < 6; k++) {
            n[k] = random_value(v[k], sizeof(v[k]));
        }

        scopes[0] = scope("tenant", v[0], n[0]);
        scopes[1] = scope("user", v[1], n[1]);

        r = contract(scopes, 1 + i % 2);
        r.request_id = v[2];
        r.request_id_len = n[2];
        r.host = v[3];
        r.host_len = n[3];
        r.meter = v[4];
        r.meter_len = n[4];
        r.model = i % 3 ? v[5] : NULL;
        r.model_len = n[5];
        r.tokens = i % 5 ? -1 : i;
        r.nalerts = i % 4;
        same_line(&r);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contract_row),
        cmocka_unit_test(test_every_field),
        cmocka_unit_test(test_random_rows),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
