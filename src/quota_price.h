/*
 * Model prices: what a number of tokens costs.  Prices are integer
 * micro-dollars per million tokens; a cost is rounded up to the
 * micro-dollar, never down.  Pure C, no nginx.
 */

#ifndef QUOTA_PRICE_H
#define QUOTA_PRICE_H

#include <stddef.h>
#include <stdint.h>


#define QUOTA_MODEL_MAX  128


typedef struct {
    unsigned char         model[QUOTA_MODEL_MAX];   /* "default": fallback */
    size_t                model_len;
    int64_t               input;        /* micro-dollars per 1M tokens */
    int64_t               output;
    int64_t               cached;       /* < 0: charged as input */
} quota_price_t;


/* tokens, in the form the prices apply to */
typedef struct {
    int64_t               input;        /* billed at the input price */
    int64_t               cached;       /* billed at the cached price */
    int64_t               output;
} quota_tokens_t;


/*
 * the price row for model: an exact match, else the longest row that is
 * a prefix of model ("gpt-4o" prices "gpt-4o-2024-08-06"), else the
 * "default" row, else *highest, filled with the highest input, output and
 * cached prices of the table, so an unknown model is never free.  NULL
 * only when the table is empty.
 */
const quota_price_t *quota_price_find(const quota_price_t *table, size_t n,
    const unsigned char *model, size_t len, quota_price_t *highest);

/*
 * the cost of tokens at prices p in micro-dollars: the exact sum of
 * tokens x price / 1,000,000 over input, cached and output, rounded up
 * once; saturates at QUOTA_MONEY_MAX (quota_money.h)
 */
int64_t quota_price_cost(const quota_price_t *p, const quota_tokens_t *t);

#endif /* QUOTA_PRICE_H */
