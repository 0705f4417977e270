/*
 * Redis key building.  A key names one (scope path, meter, period,
 * window):
 *
 *     <prefix>{tenant=acme}/user=bob:llm:day:2026-11-23
 *
 * A limit that counts requests or tokens, or whose windows are local to
 * a time zone, says so after its period, and its label is the local one:
 *
 *     <prefix>{tenant=acme}:llm:minute.req:2026-11-23T14:05
 *     <prefix>{tenant=acme}:llm:day.tok@Asia/Tokyo:2026-11-24
 *
 * The first scope sits in the Redis Cluster hash tag, so every key of a
 * request lands on one shard and one MULTI can hold them all.  Scope
 * values are percent-encoded: after encoding they hold none of
 * "{}/=:%", so two distinct scope paths never share a key whatever bytes
 * their values carry.  Pure C, no nginx.
 */

#ifndef QUOTA_KEY_H
#define QUOTA_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "quota_period.h"
#include "quota_unit.h"


/* longest scope value accepted, in bytes before escaping */
#define QUOTA_KEY_VALUE_MAX  256


/* length of value once escaped */
size_t quota_key_escaped_len(const unsigned char *value, size_t len);

/* writes the escaped value, returns the end */
unsigned char *quota_key_escape(unsigned char *dst,
    const unsigned char *value, size_t len);

/*
 * one element of the scope path: "{name=value}" for depth 0, and
 * "/name=value" below it; _len gives its exact length
 */
size_t quota_key_path_elt_len(size_t depth, size_t name_len,
    const unsigned char *value, size_t value_len);
unsigned char *quota_key_path_elt(unsigned char *dst, size_t depth,
    const unsigned char *name, size_t name_len,
    const unsigned char *value, size_t value_len);

/* the tail after the path, ":meter:period:label"; _len is an upper bound */
size_t quota_key_tail_len(size_t meter_len);
unsigned char *quota_key_tail(unsigned char *dst, const unsigned char *meter,
    size_t meter_len, quota_period_e period, int64_t window_start);

/*
 * the tail of any counter, ":meter:period[.unit][@zone]:label", with
 * the window's label as the caller worked it out (local, for a zone);
 * _len is an upper bound
 */
size_t quota_key_counter_tail_len(size_t meter_len, size_t zone_len);
unsigned char *quota_key_counter_tail(unsigned char *dst,
    const unsigned char *meter, size_t meter_len, quota_period_e period,
    quota_unit_e unit, const char *zone, size_t zone_len, const char *label,
    size_t label_len);

/* a name usable for a scope or a meter: [A-Za-z0-9_-], 1..64 bytes */
int quota_key_name_valid(const unsigned char *name, size_t len);

#endif /* QUOTA_KEY_H */
