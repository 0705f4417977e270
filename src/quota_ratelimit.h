/*
 * The RateLimit-Policy and RateLimit headers of
 * draft-ietf-httpapi-ratelimit-headers, in Structured Fields syntax:
 * one policy per limit a request is checked against, named
 * "SCOPE-PERIOD" ("SCOPE-PERIOD-req" and "-tok" for limits that count
 * requests or tokens), and the state of the one with the least left.  Pure C,
 * no nginx.
 *
 * The writers work like snprintf: they return the length the whole value
 * needs and write no more than size bytes.
 */

#ifndef QUOTA_RATELIMIT_H
#define QUOTA_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "quota_period.h"
#include "quota_unit.h"


/* an sf-integer has at most 15 digits */
#define QUOTA_RL_INT_MAX  999999999999999LL


typedef struct {
    const unsigned char  *scope;
    size_t                scope_len;
    quota_period_e        period;
    quota_unit_e          unit;
    int64_t               quota;        /* in unit */
    int64_t               window;       /* seconds */
    int64_t               remaining;    /* in unit, may be negative */
    int64_t               reset;        /* seconds */
    int64_t               cost;         /* the request's, in unit; <= 0: 1 */
} quota_rl_item_t;


/* "tenant-day";q=50000000;w=86400, "user-day";q=5000000;w=86400 */
size_t quota_rl_policy(char *buf, size_t size, const quota_rl_item_t *items,
    size_t n);

/*
 * "user-day";r=1500000;t=30497 for the item with the least left, of
 * those the one that resets last; n must be at least 1.  Limits of
 * different units are compared by how many requests of this one's cost
 * they still hold: for limits of one unit, the least remaining.
 */
size_t quota_rl_state(char *buf, size_t size, const quota_rl_item_t *items,
    size_t n);

/*
 * -1, 0 or 1 as limit a has fewer, as many or more requests of its cost
 * left than b (remaining / cost, exactly; a cost <= 0 counts as 1, a
 * negative remaining as 0): how limits of different units compare
 */
int quota_rl_fewer_left(int64_t remaining_a, int64_t cost_a,
    int64_t remaining_b, int64_t cost_b);

/* the index of the item quota_rl_state() reports */
size_t quota_rl_least(const quota_rl_item_t *items, size_t n);

#endif /* QUOTA_RATELIMIT_H */
