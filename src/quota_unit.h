/*
 * The units a limit counts: US dollars (as micro-dollars), requests and
 * tokens.  A limit's amount is written "50" or "0.25" (USD), "60req" or
 * "2000000tok"; it is named in keys, policies and the ledger as "usd",
 * "req" or "tok", and in messages as "$50.00", "60 requests",
 * "2,000,000 tokens".  Pure C, no nginx.
 */

#ifndef QUOTA_UNIT_H
#define QUOTA_UNIT_H

#include <stddef.h>
#include <stdint.h>


typedef enum {
    QUOTA_UNIT_USD = 0,
    QUOTA_UNIT_REQ,
    QUOTA_UNIT_TOK,
    QUOTA_UNIT_COUNT
} quota_unit_e;


/* "-9,223,372,036,854,775,808 requests" and a NUL fit */
#define QUOTA_UNIT_AMOUNT_LEN  48

/* counts above this are refused: no limit needs more */
#define QUOTA_UNIT_COUNT_MAX   1000000000000000LL


/*
 * An amount with its unit: returns 0, or -1 when s is neither a USD
 * amount (quota_money_parse) nor a whole number 0..QUOTA_UNIT_COUNT_MAX
 * followed by "req" or "tok".
 */
int quota_unit_parse(const char *s, size_t len, quota_unit_e *unit,
    int64_t *amount);

/* "usd", "req", "tok" */
const char *quota_unit_name(quota_unit_e unit);

/* the unit quota_unit_name() names s: 0, or -1 for none */
int quota_unit_by_name(const char *s, size_t len, quota_unit_e *unit);

/*
 * "$50.00", "1 request", "60 requests", "3,000 tokens"; returns the
 * length, buf holds at least QUOTA_UNIT_AMOUNT_LEN bytes and is
 * NUL-terminated
 */
size_t quota_unit_format(quota_unit_e unit, int64_t amount, char *buf);

#endif /* QUOTA_UNIT_H */
