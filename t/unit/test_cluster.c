/*
 * Unit tests for src/quota_cluster.c: slots as Redis Cluster computes
 * them (the values are CLUSTER KEYSLOT's), hash tags as the gate's keys
 * carry them, and redirects and retry-later errors as nodes send them.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define UNIT_RNG_SEED  0x6a09e667f3bcc909ULL
#include "unit_helpers.h"

#include "quota_cluster.h"


#define SLOT(s)  quota_cluster_key_slot((const unsigned char *) (s), strlen(s))


static void
test_crc16(void **state)
{
    (void) state;

    /* the check value of CRC-16/XMODEM */
    assert_int_equal(quota_cluster_crc16((const unsigned char *) "123456789",
                                         9), 0x31c3);
    assert_int_equal(quota_cluster_crc16((const unsigned char *) "", 0), 0);
}


static void
test_slots(void **state)
{
    (void) state;

    assert_int_equal(SLOT("foo"), 12182);
    assert_int_equal(SLOT("bar"), 5061);
    assert_int_equal(SLOT("{user1000}.following"), SLOT("user1000"));
    assert_int_equal(SLOT("{user1000}.followers"), SLOT("user1000"));

    /* an empty tag is no tag: the whole key is hashed */
    assert_int_equal(SLOT("foo{}{bar}"),
                     quota_cluster_crc16((const unsigned char *) "foo{}{bar}",
                                         10) & 16383);

    /* only the first tag counts, and a '{' inside it is part of it */
    assert_int_equal(SLOT("foo{{bar}}zap"), SLOT("{bar"));
    assert_int_equal(SLOT("foo{bar}{zap}"), SLOT("bar"));

    /* no closing brace: the whole key */
    assert_int_equal(SLOT("{unclosed"),
                     quota_cluster_crc16((const unsigned char *) "{unclosed",
                                         9) & 16383);
}


static void
test_gate_keys(void **state)
{
    (void) state;

    /* every key of one request shares the first scope's tag */
    assert_int_equal(SLOT("quota:{tenant=acme}:llm:day:20261201"),
                     SLOT("quota:{tenant=acme}:user=bob:llm:minute:x"));
    assert_int_equal(SLOT("quota:{tenant=acme}:epoch"),
                     SLOT("quota:{tenant=acme}:lease:llm"));
    assert_int_not_equal(SLOT("quota:{tenant=acme}:epoch"),
                         SLOT("quota:{tenant=acmf}:epoch"));
}


static void
test_redirects(void **state)
{
    quota_cluster_error_t  e;
    const char            *s;

    (void) state;

    s = "MOVED 3999 127.0.0.1:6381";
    assert_int_equal(quota_cluster_error(s, strlen(s), &e),
                     QUOTA_CLUSTER_MOVED);
    assert_int_equal(e.slot, 3999);
    assert_int_equal(e.port, 6381);
    assert_int_equal(e.host_len, 9);
    assert_memory_equal(e.host, "127.0.0.1", 9);

    s = "ASK 16383 10.0.0.2:7000";
    assert_int_equal(quota_cluster_error(s, strlen(s), &e), QUOTA_CLUSTER_ASK);
    assert_int_equal(e.slot, 16383);
    assert_int_equal(e.port, 7000);
    assert_memory_equal(e.host, "10.0.0.2", 8);

    /* an IPv6 address, and a node that does not know its own address */
    s = "MOVED 1 ::1:7002";
    assert_int_equal(quota_cluster_error(s, strlen(s), &e),
                     QUOTA_CLUSTER_MOVED);
    assert_int_equal(e.host_len, 3);
    assert_memory_equal(e.host, "::1", 3);
    assert_int_equal(e.port, 7002);

    s = "MOVED 12 :7003";
    assert_int_equal(quota_cluster_error(s, strlen(s), &e),
                     QUOTA_CLUSTER_MOVED);
    assert_int_equal(e.host_len, 0);
    assert_int_equal(e.port, 7003);
}


static void
test_retry_later(void **state)
{
    quota_cluster_error_t  e;
    const char            *s;

    (void) state;

    s = "TRYAGAIN Multiple keys request during rehashing of slot";
    assert_int_equal(quota_cluster_error(s, strlen(s), &e),
                     QUOTA_CLUSTER_RETRY);

    s = "CLUSTERDOWN The cluster is down";
    assert_int_equal(quota_cluster_error(s, strlen(s), &e),
                     QUOTA_CLUSTER_RETRY);

    s = "CLUSTERDOWN";
    assert_int_equal(quota_cluster_error(s, strlen(s), &e),
                     QUOTA_CLUSTER_RETRY);
}


static void
test_not_redirects(void **state)
{
    size_t                 i;
    quota_cluster_error_t  e;

    static const char     *bad[] = {
        "EXECABORT Transaction discarded because of previous errors.",
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "MOVEDX 1 a:1", "MOVED", "MOVED ", "MOVED 16384 a:1", "MOVED x a:1",
        "MOVED 1 a", "MOVED 1 a:", "MOVED 1 a:0", "MOVED 1 a:65536",
        "MOVED 1 a:123456", "MOVED 1a:1", "ASK 1 a:1x", "TRYAGAINX",
        "OOM command not allowed", ""
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (quota_cluster_error(bad[i], strlen(bad[i]), &e)
            != QUOTA_CLUSTER_OTHER)
        {
            fail_msg("\"%s\" taken for a redirect", bad[i]);
        }

        assert_int_equal(e.port, 0);
    }
}


/* whatever the bytes, no read past them and a sane answer */

static void
test_random_bytes(void **state)
{
    size_t                 i, j, len;
    char                   buf[40];
    quota_cluster_error_t  e;

    static const char     *heads[] = { "MOVED ", "ASK ", "TRYAGAIN", "" };

    (void) state;

    for (i = 0; i < 20000; i++) {
        len = strlen(heads[i % 4]);
        memcpy(buf, heads[i % 4], len);

        for (j = len; j < len + rng() % 24; j++) {
            buf[j] = "0123456789: .:a"[rng() % 15];
        }

        if (quota_cluster_error(buf, j, &e) == QUOTA_CLUSTER_MOVED) {
            assert_true(e.slot < 16384);
            assert_true(e.port > 0 && e.port < 65536);
            assert_true(e.host + e.host_len < buf + j);
        }

        assert_true(quota_cluster_key_slot((unsigned char *) buf, j) < 16384);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16),
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_gate_keys),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_retry_later),
        cmocka_unit_test(test_not_redirects),
        cmocka_unit_test(test_random_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
