/*
 * Load shedding arithmetic.  Integers throughout: a factor is compared
 * with a hash exactly, so the share admitted is the factor and not the
 * factor give or take a rounding of a double.
 */

#include <string.h>

#include "quota_throttle.h"


/* 2^64 = QUOTA_THROTTLE_Q * 10^6 + QUOTA_THROTTLE_R */
#define QUOTA_THROTTLE_Q  18446744073709ULL
#define QUOTA_THROTTLE_R  551616ULL

/* digits a scaled decimal may have in all: below 10^18, inside int64_t */
#define QUOTA_THROTTLE_DIGITS  18


/*
 * A plain decimal "12", "82.5" at s, as an integer scaled by 10^decimals;
 * no sign, no exponent, no more decimals than that.  Returns the end of
 * the number, or NULL.
 */

static const char *
quota_throttle_decimal(const char *s, const char *end, unsigned decimals,
    int64_t *value)
{
    int64_t      v;
    unsigned     digits, frac;
    const char  *p;

    v = 0;
    digits = 0;

    for (p = s; p < end && *p >= '0' && *p <= '9'; p++) {
        if (++digits + decimals > QUOTA_THROTTLE_DIGITS) {
            return NULL;
        }

        v = v * 10 + (*p - '0');
    }

    if (digits == 0) {
        return NULL;
    }

    frac = 0;

    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            if (++frac > decimals) {
                return NULL;
            }

            v = v * 10 + (*p - '0');
        }

        if (frac == 0) {
            return NULL;
        }
    }

    for ( /* void */ ; frac < decimals; frac++) {
        v *= 10;
    }

    *value = v;

    return p;
}


/* "80%": a percentage with up to 4 decimals is a whole number of ppm */

static const char *
quota_throttle_percent(const char *s, const char *end, int64_t *ppm)
{
    s = quota_throttle_decimal(s, end, 4, ppm);

    if (s == NULL || s == end || *s != '%') {
        return NULL;
    }

    return s + 1;
}


int
quota_throttle_parse_range(const char *s, size_t len,
    quota_throttle_range_t *range)
{
    int64_t      low, high;
    const char  *p, *end;

    end = s + len;

    p = quota_throttle_percent(s, end, &low);

    if (p == NULL || end - p < 2 || p[0] != '.' || p[1] != '.') {
        return QUOTA_THROTTLE_ESYNTAX;
    }

    p = quota_throttle_percent(p + 2, end, &high);

    if (p != end) {
        return QUOTA_THROTTLE_ESYNTAX;
    }

    if (low > QUOTA_THROTTLE_ONE || high > QUOTA_THROTTLE_ONE) {
        return QUOTA_THROTTLE_ERANGE;
    }

    if (low > high) {
        return QUOTA_THROTTLE_EORDER;
    }

    range->low = low;
    range->high = high;

    return QUOTA_THROTTLE_OK;
}


/* "0.52 0.58 0.59 1/467 12345\n": the first field */

int64_t
quota_throttle_parse_loadavg(const char *buf, size_t len)
{
    int64_t      load;
    const char  *p, *end;

    end = buf + len;

    p = quota_throttle_decimal(buf, end, 6, &load);

    if (p == NULL || (p < end && *p != ' ' && *p != '\t' && *p != '\n')) {
        return -1;
    }

    return load;
}


/* the number after "Name:" at the start of a line, -1 if it is not one */

static int64_t
quota_throttle_field(const char *line, const char *end, const char *name)
{
    size_t       n;
    int64_t      v;
    const char  *p;

    n = strlen(name);

    if ((size_t) (end - line) <= n || memcmp(line, name, n) != 0
        || line[n] != ':')
    {
        return -1;
    }

    for (p = line + n + 1; p < end && (*p == ' ' || *p == '\t'); p++) {
        /* void */
    }

    p = quota_throttle_decimal(p, end, 0, &v);

    if (p == NULL || (p < end && *p != ' ' && *p != '\n')) {
        return -1;
    }

    return v;
}


int64_t
quota_throttle_parse_meminfo(const char *buf, size_t len)
{
    int64_t      total, avail, used, v;
    const char  *line, *nl, *next, *end;

    total = -1;
    avail = -1;
    end = buf + len;

    for (line = buf; line < end; line = next) {
        nl = memchr(line, '\n', end - line);

        next = nl ? nl + 1 : end;
        nl = nl ? nl : end;

        v = quota_throttle_field(line, nl, "MemTotal");
        if (v >= 0) {
            total = v;
        }

        v = quota_throttle_field(line, nl, "MemAvailable");
        if (v >= 0) {
            avail = v;
        }
    }

    if (total <= 0 || avail < 0) {
        return -1;
    }

    if (avail >= total) {
        return 0;
    }

    used = total - avail;

    /* the product below stays inside 64 bits: up to 10^13 kB, 10 PB */

    while (total > 10000000000000LL) {
        total /= 1000;
        used /= 1000;
    }

    return used * 1000000 / total;
}


/* states of the cpu line counter */
#define QUOTA_CPUS_LINE   0       /* at the start of a line */
#define QUOTA_CPUS_C      1
#define QUOTA_CPUS_CP     2
#define QUOTA_CPUS_CPU    3
#define QUOTA_CPUS_SKIP   4       /* to the end of the line */

void
quota_throttle_cpus_scan(quota_throttle_cpus_t *c, const char *buf,
    size_t len)
{
    size_t  i;
    char    ch;

    for (i = 0; i < len; i++) {
        ch = buf[i];

        if (ch == '\n') {
            c->state = QUOTA_CPUS_LINE;
            continue;
        }

        switch (c->state) {

        case QUOTA_CPUS_LINE:
            c->state = ch == 'c' ? QUOTA_CPUS_C : QUOTA_CPUS_SKIP;
            break;

        case QUOTA_CPUS_C:
            c->state = ch == 'p' ? QUOTA_CPUS_CP : QUOTA_CPUS_SKIP;
            break;

        case QUOTA_CPUS_CP:
            c->state = ch == 'u' ? QUOTA_CPUS_CPU : QUOTA_CPUS_SKIP;
            break;

        case QUOTA_CPUS_CPU:
            /* "cpu0 ...", not the "cpu  ..." line of all of them */
            if (ch >= '0' && ch <= '9') {
                c->cpus++;
            }

            c->state = QUOTA_CPUS_SKIP;
            break;

        default:
            break;
        }
    }
}


int64_t
quota_throttle_per_cpu(int64_t load, int64_t cpus)
{
    if (load < 0 || cpus <= 0) {
        return QUOTA_THROTTLE_UNKNOWN;
    }

    return load / cpus;
}


int64_t
quota_throttle_range_factor(const quota_throttle_range_t *range,
    int64_t value)
{
    if (range->low < 0 || value < 0 || value <= range->low) {
        return QUOTA_THROTTLE_ONE;
    }

    if (value >= range->high) {
        return 0;
    }

    return (range->high - value) * QUOTA_THROTTLE_ONE
           / (range->high - range->low);
}


int64_t
quota_throttle_factor(const quota_throttle_conf_t *conf, int64_t cpu,
    int64_t memory)
{
    int64_t  f, m;

    f = quota_throttle_range_factor(&conf->cpu, cpu);
    m = quota_throttle_range_factor(&conf->memory, memory);

    return f < m ? f : m;
}


/*
 * FNV-1a, then MurmurHash3's finalizer: FNV alone leaves the high bits,
 * the ones compared with the factor, poorly mixed by the last bytes.
 */

uint64_t
quota_throttle_hash(const unsigned char *id, size_t len)
{
    size_t    i;
    uint64_t  h;

    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < len; i++) {
        h ^= id[i];
        h *= 0x100000001b3ULL;
    }

    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;

    return h;
}


int
quota_throttle_admit(uint64_t hash, int64_t factor)
{
    uint64_t  f, rem, threshold;

    if (factor >= QUOTA_THROTTLE_ONE) {
        return 1;
    }

    if (factor <= 0) {
        return 0;
    }

    /*
     * hash * 10^6 < factor * 2^64 is hash < ceil(factor * 2^64 / 10^6),
     * worked out with each product well inside 64 bits
     */

    f = (uint64_t) factor;
    rem = f * QUOTA_THROTTLE_R;
    threshold = f * QUOTA_THROTTLE_Q + rem / 1000000 + (rem % 1000000 != 0);

    return hash < threshold;
}


int64_t
quota_throttle_retry_after(uint64_t hash)
{
    /* the low bits: independent of the high ones that decided */
    return QUOTA_THROTTLE_RETRY_MIN
           + (int64_t) (hash % QUOTA_THROTTLE_RETRY_SPAN);
}


size_t
quota_throttle_format(char *buf, int64_t factor)
{
    int64_t  milli;

    if (factor < 0) {
        factor = 0;
    }

    if (factor > QUOTA_THROTTLE_ONE) {
        factor = QUOTA_THROTTLE_ONE;
    }

    milli = factor / 1000;

    buf[0] = (char) ('0' + milli / 1000);
    buf[1] = '.';
    buf[2] = (char) ('0' + milli / 100 % 10);
    buf[3] = (char) ('0' + milli / 10 % 10);
    buf[4] = (char) ('0' + milli % 10);
    buf[5] = '\0';

    return 5;
}
