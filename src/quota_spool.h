/*
 * Spool records: ledger rows kept on disk while PostgreSQL is away.  A
 * spool file is a sequence of records, each
 *
 *     "QSR1"  payload length (4 bytes, little-endian)
 *             CRC-32 of the payload (4 bytes, little-endian)  payload
 *
 * appended with one write.  A crash mid-write leaves at most a partial
 * last record, which the reader recognizes and stops at; a damaged record
 * (bad checksum) is skipped up to the next record that checks out.  Pure
 * C, no nginx.
 */

#ifndef QUOTA_SPOOL_H
#define QUOTA_SPOOL_H

#include <stddef.h>
#include <stdint.h>


#define QUOTA_SPOOL_HEADER   12
#define QUOTA_SPOOL_MAX      65536      /* largest payload */

#define QUOTA_SPOOL_OK       0          /* a whole record */
#define QUOTA_SPOOL_PARTIAL  1          /* the buffer ends mid-record */
#define QUOTA_SPOOL_DAMAGED  2          /* skip *consumed bytes */


uint32_t quota_crc32(const unsigned char *p, size_t len);

/*
 * writes header and payload to dst, returns QUOTA_SPOOL_HEADER + len;
 * quota_spool_frame() leaves the checksum out, for records that may never
 * reach a disk: quota_spool_seal() adds it to every record of a buffer of
 * whole framed records before they are written
 */
size_t quota_spool_encode(unsigned char *dst, const unsigned char *payload,
    size_t len);
size_t quota_spool_frame(unsigned char *dst, const unsigned char *payload,
    size_t len);
void quota_spool_seal(unsigned char *buf, size_t size);

/*
 * reads the record at buf: on QUOTA_SPOOL_OK, *payload and *len give it
 * and *consumed its size with the header; on QUOTA_SPOOL_DAMAGED,
 * *consumed is how far to skip to the next candidate record; on
 * QUOTA_SPOOL_PARTIAL nothing more can be read until more bytes come, or,
 * at the end of a file, the rest is a torn last write
 */
int quota_spool_decode(const unsigned char *buf, size_t size,
    const unsigned char **payload, size_t *len, size_t *consumed);

/*
 * the payload of a record known to be whole and sound (encoded by this
 * process, or read back by quota_spool_decode), without checking it
 * again; returns the record's size with the header
 */
size_t quota_spool_payload(const unsigned char *rec,
    const unsigned char **payload, size_t *len);

#endif /* QUOTA_SPOOL_H */
