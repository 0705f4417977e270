/*
 * Redis Cluster's arithmetic, without nginx: the slot a key lives in
 * (CRC16 of its hash tag, as Redis computes it) and what a redirect or a
 * retry-later error says.  The routing itself is
 * ngx_http_quota_cluster.c's.
 */

#ifndef QUOTA_CLUSTER_H
#define QUOTA_CLUSTER_H

#include <stddef.h>
#include <stdint.h>


#define QUOTA_CLUSTER_SLOTS  16384


typedef enum {
    QUOTA_CLUSTER_OTHER = 0,     /* not the cluster's business */
    QUOTA_CLUSTER_MOVED,         /* the slot has a new owner: remap */
    QUOTA_CLUSTER_ASK,           /* being migrated: ask the importer once */
    QUOTA_CLUSTER_RETRY          /* TRYAGAIN, CLUSTERDOWN, ...: wait */
} quota_cluster_error_e;


typedef struct {
    quota_cluster_error_e   kind;
    unsigned                slot;
    const char             *host;    /* not terminated; len 0: the same */
    size_t                  host_len;
    unsigned                port;
} quota_cluster_error_t;


/* CRC16/XMODEM, the checksum Redis Cluster hashes keys with */
uint16_t quota_cluster_crc16(const unsigned char *p, size_t len);

/*
 * the slot of a key: of the part between the first '{' and the next '}'
 * when that part is not empty, else of the whole key
 */
unsigned quota_cluster_key_slot(const unsigned char *key, size_t len);

/*
 * reads an error reply's text ("MOVED 3999 10.0.0.2:7000", "ASK ...",
 * "TRYAGAIN ...", "CLUSTERDOWN ..."); returns e->kind
 */
quota_cluster_error_e quota_cluster_error(const char *err, size_t len,
    quota_cluster_error_t *e);

#endif /* QUOTA_CLUSTER_H */
