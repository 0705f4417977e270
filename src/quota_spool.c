/*
 * Spool record framing and its checksum.
 */

#include <string.h>

#include <zlib.h>

#include "quota_spool.h"


static const unsigned char  quota_spool_magic[4] = { 'Q', 'S', 'R', '1' };


/* zlib's CRC-32: the polynomial of gzip and PNG, and nginx links it anyway */

uint32_t
quota_crc32(const unsigned char *p, size_t len)
{
    return (uint32_t) crc32_z(0, p, len);
}


static void
quota_spool_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) v;
    p[1] = (unsigned char) (v >> 8);
    p[2] = (unsigned char) (v >> 16);
    p[3] = (unsigned char) (v >> 24);
}


static uint32_t
quota_spool_get32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8
           | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}


size_t
quota_spool_frame(unsigned char *dst, const unsigned char *payload,
    size_t len)
{
    memcpy(dst, quota_spool_magic, 4);
    quota_spool_put32(dst + 4, (uint32_t) len);
    quota_spool_put32(dst + 8, 0);
    memcpy(dst + QUOTA_SPOOL_HEADER, payload, len);

    return QUOTA_SPOOL_HEADER + len;
}


void
quota_spool_seal(unsigned char *buf, size_t size)
{
    size_t          used, len;
    unsigned char  *rec;

    for (used = 0; used + QUOTA_SPOOL_HEADER <= size; used += len) {
        rec = buf + used;
        len = quota_spool_get32(rec + 4);
        quota_spool_put32(rec + 8, quota_crc32(rec + QUOTA_SPOOL_HEADER, len));
        len += QUOTA_SPOOL_HEADER;
    }
}


size_t
quota_spool_encode(unsigned char *dst, const unsigned char *payload,
    size_t len)
{
    size_t  n;

    n = quota_spool_frame(dst, payload, len);
    quota_spool_seal(dst, n);

    return n;
}


/* where the next record could start, after a damaged one at buf */

static size_t
quota_spool_resync(const unsigned char *buf, size_t size)
{
    size_t  i;

    for (i = 1; i + 4 <= size; i++) {
        if (memcmp(buf + i, quota_spool_magic, 4) == 0) {
            return i;
        }
    }

    /* a magic may still be starting in the last bytes */
    return size < 4 ? size : size - 3;
}


int
quota_spool_decode(const unsigned char *buf, size_t size,
    const unsigned char **payload, size_t *len, size_t *consumed)
{
    size_t  n;

    if (size < 4) {
        if (memcmp(buf, quota_spool_magic, size) != 0) {
            *consumed = size ? 1 : 0;
            return size ? QUOTA_SPOOL_DAMAGED : QUOTA_SPOOL_PARTIAL;
        }

        return QUOTA_SPOOL_PARTIAL;
    }

    if (memcmp(buf, quota_spool_magic, 4) != 0) {
        *consumed = quota_spool_resync(buf, size);
        return QUOTA_SPOOL_DAMAGED;
    }

    if (size < QUOTA_SPOOL_HEADER) {
        return QUOTA_SPOOL_PARTIAL;
    }

    n = quota_spool_get32(buf + 4);

    if (n > QUOTA_SPOOL_MAX) {
        *consumed = quota_spool_resync(buf, size);
        return QUOTA_SPOOL_DAMAGED;
    }

    if (size < QUOTA_SPOOL_HEADER + n) {
        return QUOTA_SPOOL_PARTIAL;
    }

    if (quota_crc32(buf + QUOTA_SPOOL_HEADER, n)
        != quota_spool_get32(buf + 8))
    {
        *consumed = quota_spool_resync(buf, size);
        return QUOTA_SPOOL_DAMAGED;
    }

    *payload = buf + QUOTA_SPOOL_HEADER;
    *len = n;
    *consumed = QUOTA_SPOOL_HEADER + n;

    return QUOTA_SPOOL_OK;
}


size_t
quota_spool_payload(const unsigned char *rec, const unsigned char **payload,
    size_t *len)
{
    *len = quota_spool_get32(rec + 4);
    *payload = rec + QUOTA_SPOOL_HEADER;

    return QUOTA_SPOOL_HEADER + *len;
}
