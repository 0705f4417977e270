/*
 * Load shedding, `quota_throttle cpu=LOW%..HIGH% memory=LOW%..HIGH%`: the
 * host's 1-minute load per CPU and its memory in use, read from procfs
 * text, turned into the share of requests to admit (the throttle factor),
 * and the decision for one request from a hash of its id.  Pure C, no
 * nginx.
 *
 * Every quantity is an integer in parts per million: a percentage of 80
 * is 800000, a load of 1.6 per CPU is 1600000, a factor of 0.5 is 500000.
 */

#ifndef QUOTA_THROTTLE_H
#define QUOTA_THROTTLE_H

#include <stddef.h>
#include <stdint.h>


#define QUOTA_THROTTLE_ONE        1000000LL    /* 100 %, a factor of 1 */

/* a reading that could not be taken: it sheds nothing */
#define QUOTA_THROTTLE_UNKNOWN    (-1LL)

/* "0.500": what $quota_throttle and the refusal print */
#define QUOTA_THROTTLE_LEN        8

/* a shed request is told to come back after 2 to 5 seconds */
#define QUOTA_THROTTLE_RETRY_MIN  2
#define QUOTA_THROTTLE_RETRY_SPAN 4


/* why a range was refused, for nginx -t */
#define QUOTA_THROTTLE_OK          0
#define QUOTA_THROTTLE_ESYNTAX   (-1)     /* not "N%..M%" with numbers */
#define QUOTA_THROTTLE_ERANGE    (-2)     /* a mark outside 0..100 */
#define QUOTA_THROTTLE_EORDER    (-3)     /* LOW above HIGH */


typedef struct {
    int64_t                  low;        /* ppm; -1: no range given */
    int64_t                  high;
} quota_throttle_range_t;


typedef struct {
    quota_throttle_range_t   cpu;        /* load per CPU */
    quota_throttle_range_t   memory;     /* memory in use */
} quota_throttle_conf_t;


/* counts the "cpuN" lines of /proc/stat, fed in pieces of any size */
typedef struct {
    unsigned                 state;
    int64_t                  cpus;
} quota_throttle_cpus_t;


/*
 * "80%..95%" (a mark may have up to 4 decimals, "82.5%"); returns one of
 * the codes above
 */
int quota_throttle_parse_range(const char *s, size_t len,
    quota_throttle_range_t *range);

/* the 1-minute load of /proc/loadavg in ppm ("1.60 ..." -> 1600000), -1 */
int64_t quota_throttle_parse_loadavg(const char *buf, size_t len);

/*
 * memory in use, 1 - MemAvailable/MemTotal, in ppm from /proc/meminfo
 * text; -1 when either line is missing or MemTotal is 0
 */
int64_t quota_throttle_parse_meminfo(const char *buf, size_t len);

void quota_throttle_cpus_scan(quota_throttle_cpus_t *c, const char *buf,
    size_t len);

/* the load per CPU, in ppm, of a load in ppm; -1 if either is unknown */
int64_t quota_throttle_per_cpu(int64_t load, int64_t cpus);

/* 1 at or below LOW, 0 at or above HIGH, linear between; in ppm */
int64_t quota_throttle_range_factor(const quota_throttle_range_t *range,
    int64_t value);

/*
 * the lower of the cpu and the memory factors; a range not given, or a
 * reading that is QUOTA_THROTTLE_UNKNOWN, counts as 1
 */
int64_t quota_throttle_factor(const quota_throttle_conf_t *conf,
    int64_t cpu, int64_t memory);

/* a 64-bit hash of a request id whose bits are all well mixed */
uint64_t quota_throttle_hash(const unsigned char *id, size_t len);

/* 1 when hash / 2^64 < factor / 10^6: admitted; exact, no floating point */
int quota_throttle_admit(uint64_t hash, int64_t factor);

/* Retry-After of a shed request: 2..5 s, spread by the hash's low bits */
int64_t quota_throttle_retry_after(uint64_t hash);

/* factor in ppm as "0.500" (3 decimals, rounded down); returns the length */
size_t quota_throttle_format(char *buf, int64_t factor);

#endif /* QUOTA_THROTTLE_H */
