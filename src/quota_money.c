/*
 * Money as integer micro-dollars.  The parser is strict on purpose: an
 * amount that could be read two ways ("1e3", "-1", "0.1234567") is a
 * configuration error, not something to guess at.
 */

#include "quota_money.h"


int
quota_money_parse(const char *s, size_t len, int64_t *micros)
{
    size_t   i, decimals;
    int64_t  whole, frac;

    if (len == 0) {
        return -1;
    }

    whole = 0;

    for (i = 0; i < len && s[i] != '.'; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        if (whole > QUOTA_MONEY_MAX / QUOTA_MICROS_PER_USD) {
            return -1;
        }

        whole = whole * 10 + (s[i] - '0');
    }

    if (i == 0) {
        return -1;
    }

    frac = 0;
    decimals = 0;

    if (i < len) {
        /* s[i] == '.' */
        i++;

        if (i == len) {
            return -1;
        }

        for ( /* void */ ; i < len; i++) {
            if (s[i] < '0' || s[i] > '9' || decimals == 6) {
                return -1;
            }

            frac = frac * 10 + (s[i] - '0');
            decimals++;
        }
    }

    for ( /* void */ ; decimals < 6; decimals++) {
        frac *= 10;
    }

    if (whole > QUOTA_MONEY_MAX / QUOTA_MICROS_PER_USD) {
        return -1;
    }

    whole = whole * QUOTA_MICROS_PER_USD + frac;

    if (whole > QUOTA_MONEY_MAX) {
        return -1;
    }

    *micros = whole;

    return 0;
}


size_t
quota_money_format(int64_t micros, char *buf)
{
    char      tmp[QUOTA_MONEY_LEN];
    char     *p;
    size_t    n, i, digits;
    uint64_t  v, whole, frac;

    p = buf;

    if (micros < 0) {
        *p++ = '-';
        v = (uint64_t) 0 - (uint64_t) micros;

    } else {
        v = (uint64_t) micros;
    }

    whole = v / QUOTA_MICROS_PER_USD;
    frac = v % QUOTA_MICROS_PER_USD;

    n = 0;

    do {
        tmp[n++] = (char) ('0' + whole % 10);
        whole /= 10;
    } while (whole);

    while (n) {
        *p++ = tmp[--n];
    }

    *p++ = '.';

    for (i = 0; i < 6; i++) {
        tmp[5 - i] = (char) ('0' + frac % 10);
        frac /= 10;
    }

    digits = 6;

    while (digits > 2 && tmp[digits - 1] == '0') {
        digits--;
    }

    for (i = 0; i < digits; i++) {
        *p++ = tmp[i];
    }

    *p = '\0';

    return p - buf;
}
