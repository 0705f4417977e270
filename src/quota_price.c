/*
 * Model prices.  The cost is computed exactly, in 128-bit integers, and
 * rounded once at the end: rounding each of input, cached and output on
 * its own would charge up to 2 micro-dollars too much, and rounding down
 * anywhere would let many tiny calls go free.
 */

#include <string.h>

#include "quota_money.h"
#include "quota_price.h"


typedef unsigned __int128  quota_u128_t;


static int
quota_price_is(const quota_price_t *p, const char *name, size_t len)
{
    return p->model_len == len && memcmp(p->model, name, len) == 0;
}


/* the price cached input is billed at: its own, or the input price */

static int64_t
quota_price_cached(const quota_price_t *p)
{
    return p->cached < 0 ? p->input : p->cached;
}


/*
 * *highest is filled on every call, whatever row is returned: the
 * configuration works it out once with an empty model, and must get it
 * even when a "default" row would answer that lookup.
 */

const quota_price_t *
quota_price_find(const quota_price_t *table, size_t n,
    const unsigned char *model, size_t len, quota_price_t *highest)
{
    size_t                i;
    const quota_price_t  *p, *exact, *prefix, *dflt;

    if (n == 0) {
        return NULL;
    }

    if (highest) {
        memset(highest, 0, sizeof(quota_price_t));
    }

    exact = NULL;
    prefix = NULL;
    dflt = NULL;

    for (i = 0; i < n; i++) {
        p = &table[i];

        if (highest) {
            if (p->input > highest->input) {
                highest->input = p->input;
            }

            if (p->output > highest->output) {
                highest->output = p->output;
            }

            if (quota_price_cached(p) > highest->cached) {
                highest->cached = quota_price_cached(p);
            }
        }

        /* a row longer than its array is corrupt: it matches nothing */
        if (p->model_len == 0 || p->model_len > QUOTA_MODEL_MAX) {
            continue;
        }

        if (exact == NULL && p->model_len == len
            && memcmp(p->model, model, len) == 0)
        {
            exact = p;
        }

        if (p->model_len < len
            && (prefix == NULL || p->model_len > prefix->model_len)
            && memcmp(p->model, model, p->model_len) == 0)
        {
            prefix = p;
        }

        if (dflt == NULL && quota_price_is(p, "default", 7)) {
            dflt = p;
        }
    }

    if (exact) {
        return exact;
    }

    if (prefix) {
        return prefix;
    }

    if (dflt) {
        return dflt;
    }

    return highest;
}


static quota_u128_t
quota_price_term(int64_t tokens, int64_t price)
{
    if (tokens <= 0 || price <= 0) {
        return 0;
    }

    /* below 2^126: three of them cannot overflow 128 bits */
    return (quota_u128_t) (uint64_t) tokens * (uint64_t) price;
}


/*
 * A missing price row (an empty table) charges the maximum: an unpriced
 * call is never free.  Negative token counts and prices count as 0.
 */

int64_t
quota_price_cost(const quota_price_t *p, const quota_tokens_t *t)
{
    quota_u128_t  sum;

    if (p == NULL) {
        return QUOTA_MONEY_MAX;
    }

    if (t == NULL) {
        return 0;
    }

    sum = quota_price_term(t->input, p->input)
          + quota_price_term(t->cached, quota_price_cached(p))
          + quota_price_term(t->output, p->output);

    sum = (sum + 999999) / 1000000;

    if (sum > (quota_u128_t) QUOTA_MONEY_MAX) {
        return QUOTA_MONEY_MAX;
    }

    return (int64_t) sum;
}
