/*
 * `quota_response auto`: whether a refusal goes out as SSE or as JSON.
 * Pure C, no nginx.
 */

#ifndef QUOTA_ACCEPT_H
#define QUOTA_ACCEPT_H

#include <stddef.h>


#define QUOTA_ACCEPT_SSE   0x01     /* names text/event-stream */
#define QUOTA_ACCEPT_JSON  0x02     /* names application/json */


/*
 * the media types of one Accept value the decision looks at, ignoring
 * case, parameters and those refused with q=0
 */
unsigned quota_accept_scan(const unsigned char *v, size_t len);

/*
 * SSE when Accept names text/event-stream and not application/json (the
 * SDKs send application/json even when they stream); when it names
 * neither, as with no Accept or only wildcards, when the request asked for
 * "stream": true
 */
int quota_accept_wants_sse(unsigned accept, int stream);

#endif /* QUOTA_ACCEPT_H */
