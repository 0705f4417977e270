/*
 * Units of limits: parsing amounts as operators write them and writing
 * them as people read them.  Counts are grouped by thousands, as "3,000
 * tokens" reads at a glance where "3000000 tokens" does not.
 */

#include <string.h>

#include "quota_money.h"
#include "quota_unit.h"


static const char  *quota_unit_names[QUOTA_UNIT_COUNT] = {
    "usd", "req", "tok"
};


int
quota_unit_parse(const char *s, size_t len, quota_unit_e *unit,
    int64_t *amount)
{
    size_t   i, n;
    int64_t  v;

    if (len > 3 && (memcmp(s + len - 3, "req", 3) == 0
                    || memcmp(s + len - 3, "tok", 3) == 0))
    {
        n = len - 3;
        v = 0;

        for (i = 0; i < n; i++) {
            if (s[i] < '0' || s[i] > '9'
                || v > (QUOTA_UNIT_COUNT_MAX - (s[i] - '0')) / 10)
            {
                return -1;
            }

            v = v * 10 + (s[i] - '0');
        }

        *unit = s[n] == 'r' ? QUOTA_UNIT_REQ : QUOTA_UNIT_TOK;
        *amount = v;

        return 0;
    }

    if (quota_money_parse(s, len, amount) != 0) {
        return -1;
    }

    *unit = QUOTA_UNIT_USD;

    return 0;
}


const char *
quota_unit_name(quota_unit_e unit)
{
    return unit < QUOTA_UNIT_COUNT ? quota_unit_names[unit] : "usd";
}


int
quota_unit_by_name(const char *s, size_t len, quota_unit_e *unit)
{
    int  u;

    for (u = 0; u < QUOTA_UNIT_COUNT; u++) {
        if (len == 3 && memcmp(s, quota_unit_names[u], 3) == 0) {
            *unit = (quota_unit_e) u;
            return 0;
        }
    }

    return -1;
}


/* v >= 0 with commas between groups of three digits */
static size_t
quota_unit_grouped(uint64_t v, char *buf)
{
    char    digits[24];
    size_t  n, i, len;

    n = 0;

    do {
        digits[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    len = 0;

    for (i = n; i > 0; i--) {
        buf[len++] = digits[i - 1];

        if (i > 1 && (i - 1) % 3 == 0) {
            buf[len++] = ',';
        }
    }

    return len;
}


size_t
quota_unit_format(quota_unit_e unit, int64_t amount, char *buf)
{
    size_t    len;
    uint64_t  v;

    if (unit != QUOTA_UNIT_REQ && unit != QUOTA_UNIT_TOK) {
        buf[0] = '$';
        return 1 + quota_money_format(amount, buf + 1);
    }

    len = 0;

    if (amount < 0) {
        buf[len++] = '-';
        v = (uint64_t) -(amount + 1) + 1;

    } else {
        v = (uint64_t) amount;
    }

    len += quota_unit_grouped(v, buf + len);

    if (unit == QUOTA_UNIT_REQ) {
        memcpy(buf + len, v == 1 ? " request" : " requests",
               v == 1 ? 9 : 10);
        len += v == 1 ? 8 : 9;

    } else {
        memcpy(buf + len, v == 1 ? " token" : " tokens", v == 1 ? 7 : 8);
        len += v == 1 ? 6 : 7;
    }

    /* the copies above took the NUL along */
    return len;
}
