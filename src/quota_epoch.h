/*
 * Epochs of Redis counters.  Every hash tag (the first scope, e.g.
 * "{tenant=acme}") has an epoch: a number in the name of each of its
 * counters and in its marker key,
 *
 *     <prefix>{tenant=acme}/user=bob:llm:day:2026-11-23:e1764547200123
 *     <prefix>{tenant=acme}:epoch  ->  "1764547200123:<run_id>"
 *
 * The marker is written once the tag's counters have been restored from
 * the ledger, and names the Redis server (its run_id) it was written on.
 * A marker that is missing (restart without persistence, FLUSHALL, key
 * expired) or names another server (a failover to a replica, a restart)
 * says the counters cannot be trusted: they are restored under a new
 * epoch, and writes meant for the old one land on keys nobody reads.
 *
 * Also the one place that turns a scope path as the ledger keeps it
 * ("tenant=acme/user=b%2Fob", display form) back into a key path.
 * Pure C, no nginx.
 */

#ifndef QUOTA_EPOCH_H
#define QUOTA_EPOCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


/* ":e" and 19 digits */
#define QUOTA_EPOCH_SUFFIX_MAX  21

/* "<epoch>:<run_id>", run_id at most 40 bytes */
#define QUOTA_EPOCH_MARK_MAX    64


typedef enum {
    QUOTA_EPOCH_CURRENT = 0,     /* written on this server: trust it */
    QUOTA_EPOCH_FOREIGN,         /* written on another server */
    QUOTA_EPOCH_BAD              /* not a marker at all */
} quota_epoch_mark_e;


/* ":e<epoch>", the end of every counter key of the epoch; returns the end */
unsigned char *quota_epoch_suffix(unsigned char *dst, int64_t epoch);

/* the marker's value; returns its length */
size_t quota_epoch_mark(unsigned char *dst, int64_t epoch,
    const unsigned char *run_id, size_t run_id_len);

/*
 * reads a marker against the server's run_id (empty when unknown: any
 * server is taken as this one)
 */
quota_epoch_mark_e quota_epoch_mark_parse(const unsigned char *mark,
    size_t len, const unsigned char *run_id, size_t run_id_len,
    int64_t *epoch);

/*
 * a new epoch, later than the one before when that is known (0 if not):
 * the time in ms, so two restores of one tag never share an epoch
 */
int64_t quota_epoch_next(int64_t now_ms, int64_t before);

/*
 * the key path of a display-form scope path, "{tenant=acme}/user=bob";
 * returns its length, or (size_t) -1 when path is not a display-form
 * scope path or dst is too small (3 * len + 2 bytes always do)
 */
size_t quota_epoch_key_path(unsigned char *dst, size_t size,
    const unsigned char *path, size_t len);

#endif /* QUOTA_EPOCH_H */
