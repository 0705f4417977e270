/*
 * Accept as RFC 9110 writes it: media ranges separated by commas, each
 * with ;parameters, of which only q matters here.
 */

#include <string.h>
#include <strings.h>

#include "quota_accept.h"


static int
quota_accept_is(const unsigned char *s, size_t len, const char *type)
{
    size_t  n;

    n = strlen(type);

    return len == n && strncasecmp((const char *) s, type, n) == 0;
}


/* q=0, q=0.0, q=0.000: the type is refused */
static int
quota_accept_refused(const unsigned char *p, const unsigned char *end)
{
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t')) {
            p++;
        }

        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            p += 2;

            if (p == end || *p != '0') {
                return 0;
            }

            for (p++; p < end && (*p == '.' || *p == '0'); p++) {
                /* void */
            }

            return p == end || *p == ';' || *p == ' ' || *p == '\t';
        }

        while (p < end && *p != ';') {
            p++;
        }
    }

    return 0;
}


unsigned
quota_accept_scan(const unsigned char *v, size_t len)
{
    unsigned              found;
    const unsigned char  *p, *end, *range, *type_end, *last;

    found = 0;
    p = v;
    last = v + len;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        for (end = p; end < last && *end != ','; end++) { /* void */ }

        range = p;

        for (type_end = range;
             type_end < end && *type_end != ';' && *type_end != ' '
             && *type_end != '\t';
             type_end++)
        {
            /* void */
        }

        if (!quota_accept_refused(type_end, end)) {
            if (quota_accept_is(range, type_end - range,
                                "text/event-stream"))
            {
                found |= QUOTA_ACCEPT_SSE;

            } else if (quota_accept_is(range, type_end - range,
                                       "application/json"))
            {
                found |= QUOTA_ACCEPT_JSON;
            }
        }

        p = end;
    }

    return found;
}


int
quota_accept_wants_sse(unsigned accept, int stream)
{
    if (accept & QUOTA_ACCEPT_JSON) {
        return 0;
    }

    if (accept & QUOTA_ACCEPT_SSE) {
        return 1;
    }

    return stream;
}
