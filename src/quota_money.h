/*
 * Money as integer micro-dollars (1 USD = 1,000,000): parsing the decimal
 * amounts operators write in directives and upstreams send in headers,
 * and formatting amounts for headers, bodies and log variables.  No
 * floating point anywhere in accounting.
 */

#ifndef QUOTA_MONEY_H
#define QUOTA_MONEY_H

#include <stddef.h>
#include <stdint.h>


#define QUOTA_MICROS_PER_USD  1000000LL

/* the largest amount accepted anywhere: one billion dollars */
#define QUOTA_MONEY_MAX       (1000000000LL * QUOTA_MICROS_PER_USD)

/* "-1000000000.000000" and a NUL fit */
#define QUOTA_MONEY_LEN       32


/*
 * "12", "0.30", "1.234567" -> micro-dollars; returns 0, or -1 when s is
 * not a plain non-negative decimal with at most 6 decimals, or is above
 * QUOTA_MONEY_MAX.  Signs, exponents, spaces and "$" are refused.
 */
int quota_money_parse(const char *s, size_t len, int64_t *micros);

/*
 * micro-dollars -> "0.30", "50.00", "1.234567": at least 2 and at most 6
 * decimals, trailing zeros dropped past the second; returns the length,
 * buf holds at least QUOTA_MONEY_LEN bytes and is NUL-terminated
 */
size_t quota_money_format(int64_t micros, char *buf);

#endif /* QUOTA_MONEY_H */
