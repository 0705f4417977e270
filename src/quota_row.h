/*
 * A ledger row: what one gated request spent, in the JSON form that
 * quota.record_spend() takes (docs/ledger-contract.md) and that the spool
 * keeps while PostgreSQL is away, and as the COPY line a batch sends.
 * Pure C, no nginx.
 */

#ifndef QUOTA_ROW_H
#define QUOTA_ROW_H

#include <stddef.h>
#include <stdint.h>

#include "quota_json.h"
#include "quota_period.h"
#include "quota_unit.h"


/*
 * A counter's limits, its hard one and its soft one: each is an entry of
 * the row's "limits", the soft one with "soft": true.
 */
typedef struct {
    unsigned              depth;          /* 1: the first scope */
    quota_period_e        period;
    int64_t               limit;          /* in its unit, -1: none */
    int64_t               soft;           /* in its unit, -1: none */
    quota_unit_e          unit;           /* "unit", left out for usd */
    const char           *tz;             /* zone name, NULL: UTC */
} quota_row_limit_t;


typedef struct {
    const unsigned char      *request_id;
    size_t                    request_id_len;
    const unsigned char      *host;
    size_t                    host_len;
    const unsigned char      *meter;
    size_t                    meter_len;
    int64_t                   ts_ms;

    const quota_scope_ref_t  *scopes;
    size_t                    nscopes;

    const char               *decision;
    int64_t                   estimated;      /* micro-dollars */
    int64_t                   actual;
    int                       upstream_status;  /* 0: none */
    int                       http_status;

    const unsigned char      *model;          /* NULL: none */
    size_t                    model_len;
    int64_t                   prompt_tokens;  /* < 0: unknown */
    int64_t                   completion_tokens;
    int64_t                   cached_tokens;
    int64_t                   tokens;         /* charged to token limits,
                                                 < 0: none counts them */

    const quota_row_limit_t  *limits;
    size_t                    nlimits;

    int64_t                   epoch;          /* Redis counters charged, 0: none */

    const uint16_t           *alerts;         /* quota_alert, in percent */
    size_t                    nalerts;
} quota_row_t;


/* the row as one JSON object, snprintf-like (see quota_json.h) */
size_t quota_row_json(char *buf, size_t size, const quota_row_t *row);

/*
 * a size quota_row_json() never exceeds for this row, found without
 * writing it, so that the row is written in one pass
 */
size_t quota_row_json_max(const quota_row_t *row);

/*
 * the row as one line of COPY text, '\n' included, snprintf-like: the
 * line quota_copy_row() makes of quota_row_json()'s JSON
 * (quota_copy.h), written without it
 */
size_t quota_row_copy(char *buf, size_t size, const quota_row_t *row);

/* a size quota_row_copy() never exceeds for this row */
size_t quota_row_copy_max(const quota_row_t *row);

/*
 * display form of a scope id: its bytes, but "%", "/", "=", control bytes
 * and bytes that are not part of valid UTF-8 become %XX; injective, and
 * safe to join with "/" into a path
 */
size_t quota_display(char *buf, size_t size, const unsigned char *s,
    size_t len);

#endif /* QUOTA_ROW_H */
