/*
 * Unit tests for src/quota_row.c, scope ids in rows: valid JSON whose
 * strings are the display forms (quotes, backslashes, slashes, random
 * bytes), joined with "/" into an unambiguous path.  Rows are parsed
 * back with jansson (json_loadb, flags 0).
 */

#include "row_helpers.h"


/* the row's scope_ids, each a JSON string equal to the display form */
static void
check_scope_ids(const quota_scope_ref_t *scopes, size_t nscopes)
{
    char         *buf, *d, *path, *p;
    size_t        n, i, dn, plen;
    json_t       *j, *ids, *s;
    quota_row_t   r;

    r = contract(scopes, nscopes);

    buf = row_json(&r, &n);
    j = load(buf, n);

    check_fields(j);

    ids = json_object_get(j, "scope_ids");
    assert_true(json_is_array(ids));
    assert_int_equal(json_array_size(ids), nscopes);

    path = malloc(n + 1);
    assert_non_null(path);
    plen = 0;

    for (i = 0; i < nscopes; i++) {
        s = json_array_get(ids, i);
        assert_true(json_is_string(s));

        d = display(scopes[i].value, scopes[i].value_len, &dn);

        assert_int_equal(json_string_length(s), dn);
        assert_memory_equal(json_string_value(s), d, dn);

        /* the path of ids, as in quota.cost_quotas.scope_id */
        if (i) {
            path[plen++] = '/';
        }

        memcpy(path + plen, json_string_value(s), dn);
        plen += dn;

        free(d);
    }

    /* its "/" are the joins, so it splits back into the ids */
    for (i = 0, p = path; i < nscopes; i++) {
        s = json_array_get(ids, i);
        dn = json_string_length(s);

        assert_memory_equal(p, json_string_value(s), dn);
        p += dn;

        if (i + 1 < nscopes) {
            assert_int_equal(*p, '/');
            p++;
        }
    }

    assert_true(p == path + plen);

    n = 0;

    for (i = 0; i < plen; i++) {
        n += path[i] == '/';
    }

    assert_int_equal(n, nscopes ? nscopes - 1 : 0);

    free(path);
    json_decref(j);
    free(buf);
}


static void
test_scope_ids_with_quotes_and_backslashes(void **state)
{
    char               *buf;
    size_t              n;
    json_t             *j, *ids;
    quota_row_t         r;
    quota_scope_ref_t   scopes[3];

    (void) state;

    scopes[0] = scope("tenant", "a\"b\\c", 5);
    scopes[1] = scope("team", "\"", 1);
    scopes[2] = scope("user", "\\\"/=%\\", 6);

    check_scope_ids(scopes, 3);

    r = contract(scopes, 3);
    buf = row_json(&r, &n);

    assert_non_null(strstr(buf, "\"scope_ids\":[\"a\\\"b\\\\c\",\"\\\"\","
                                "\"\\\\\\\"%2F%3D%25\\\\\"],"));

    j = load(buf, n);
    ids = json_object_get(j, "scope_ids");
    assert_string_equal(json_string_value(json_array_get(ids, 0)),
                        "a\"b\\c");
    assert_string_equal(json_string_value(json_array_get(ids, 1)), "\"");
    assert_string_equal(json_string_value(json_array_get(ids, 2)),
                        "\\\"%2F%3D%25\\");

    json_decref(j);
    free(buf);
}


static void
test_scope_ids_with_slashes_make_a_path(void **state)
{
    quota_scope_ref_t  scopes[3];

    (void) state;

    scopes[0] = scope("tenant", "acme/eu", 7);
    scopes[1] = scope("team", "/", 1);
    scopes[2] = scope("user", "bob//", 5);

    check_scope_ids(scopes, 3);

    /* "a/b" under nothing and "b" under "a" are different paths */
    scopes[0] = scope("tenant", "a/b", 3);
    check_scope_ids(scopes, 1);
}


static void
test_random_scope_ids_in_rows(void **state)
{
    size_t              i, k, nscopes;
    unsigned char       v[4][48];
    quota_scope_ref_t   scopes[4];

    static const char  *names[4] = { "tenant", "team", "user", "key" };

    (void) state;

    for (i = 0; i < 5000; i++) {
        nscopes = (size_t) (rng() % 5);

        for (k = 0; k < nscopes; k++) {
            scopes[k] = scope(names[k], v[k], random_value(v[k], 48));
        }

        check_scope_ids(scopes, nscopes);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_scope_ids_with_quotes_and_backslashes),
        cmocka_unit_test(test_scope_ids_with_slashes_make_a_path),
        cmocka_unit_test(test_random_scope_ids_in_rows),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
