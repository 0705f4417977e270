/*
 * Long strings measured and taken out of a chat body before jansson sees
 * it; see quota_skeleton.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quota_skeleton.h"


static unsigned long quota_skeleton_hex4(const unsigned char *p);
static void quota_skeleton_code_point(unsigned long cp, uint64_t *text,
    uint64_t *json);


/*
 * The skeleton of body: long string values out, placeholders in.  The
 * strings' ends are found the way JSON defines them; their contents are
 * not checked, as the upstream will.  NULL: parse the body whole (no
 * memory, or a string that never ends, which jansson will refuse).
 */

unsigned char *
quota_skeleton(const unsigned char *body, size_t len, size_t *out,
    quota_string_t **strings, size_t *nstrings)
{
    size_t                i, j, k, o, n;
    uint64_t              text, json;
    unsigned char        *sk;
    quota_string_t       *str;
    const unsigned char  *q, *e;

    sk = malloc(len);
    *strings = malloc((len / QUOTA_SKELETON_MIN + 1)
                        * sizeof(quota_string_t));

    if (sk == NULL || *strings == NULL) {
        goto whole;
    }

    n = 0;
    o = 0;

    for (i = 0; i < len; /* void */) {

        /* up to the next string, as is */

        q = memchr(body + i, '"', len - i);
        k = q ? (size_t) (q - body) : len;

        memcpy(sk + o, body + i, k - i);
        o += k - i;
        i = k;

        if (i == len) {
            break;
        }

        /* the string: runs of plain bytes between escapes */

        text = 0;
        json = 2;

        for (j = i + 1; j < len; /* void */) {
            q = memchr(body + j, '"', len - j);
            k = q ? (size_t) (q - body) : len;

            e = memchr(body + j, '\\', k - j);

            if (e == NULL) {
                text += k - j;
                json += k - j;
                j = k;
                break;
            }

            text += (size_t) (e - body) - j;
            json += (size_t) (e - body) - j;
            j = e - body;

            if (j + 1 >= len) {
                goto whole;
            }

            if (body[j + 1] != 'u' || j + 5 >= len) {
                /* \/ is written back as '/', the others stay escaped */
                text++;
                json += body[j + 1] == '/' ? 1 : 2;
                j += 2;
                continue;
            }

            quota_skeleton_code_point(quota_skeleton_hex4(body + j + 2),
                                     &text, &json);
            j += 6;
        }

        if (j >= len) {
            goto whole;
        }

        /* a key (followed by ':') stays, whatever its length */

        for (k = j + 1; k < len && (body[k] == ' ' || body[k] == '\t'
                                    || body[k] == '\n' || body[k] == '\r');
             k++)
        {
            /* void */
        }

        if (j + 1 - i < QUOTA_SKELETON_MIN
            || (k < len && body[k] == ':'))
        {
            memcpy(sk + o, body + i, j + 1 - i);
            o += j + 1 - i;
            i = j + 1;
            continue;
        }

        str = &(*strings)[n];
        str->text = text;
        str->json = json;

        o += (size_t) sprintf((char *) sk + o, "\"\\u0000%zu\"", n);
        n++;
        i = j + 1;
    }

    *nstrings = n;
    *out = o;

    return sk;

whole:

    free(sk);
    free(*strings);
    *strings = NULL;

    return NULL;
}


int
quota_skeleton_has_nul(const unsigned char *body, size_t len)
{
    const unsigned char  *p, *end;

    end = body + len;

    for (p = body; (p = memchr(p, '\\', end - p)) != NULL; p++) {
        if (end - p >= 6 && memcmp(p + 1, "u0000", 5) == 0) {
            return 1;
        }
    }

    return 0;
}


/* the value of four hex digits; anything else reads as a large code point */

static unsigned long
quota_skeleton_hex4(const unsigned char *p)
{
    int            i;
    unsigned long  v;

    v = 0;

    for (i = 0; i < 4; i++) {
        v <<= 4;

        if (p[i] >= '0' && p[i] <= '9') {
            v |= (unsigned long) (p[i] - '0');

        } else if ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f') {
            v |= (unsigned long) ((p[i] | 0x20) - 'a' + 10);

        } else {
            return 0xffff;
        }
    }

    return v;
}


/*
 * what one \uXXXX adds: its UTF-8 bytes (each half of a surrogate pair
 * two of the pair's four), and as jansson writes it back, UTF-8 except
 * for '"', '\\' and control characters
 */

static void
quota_skeleton_code_point(unsigned long cp, uint64_t *text, uint64_t *json)
{
    uint64_t  n;

    n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : (cp >= 0xd800 && cp < 0xe000) ? 2
                                                                        : 3;
    *text += n;

    if (cp == '"' || cp == '\\' || cp == '\b' || cp == '\f' || cp == '\n'
        || cp == '\r' || cp == '\t')
    {
        *json += 2;

    } else if (cp < 0x20 || cp == 0x7f) {
        *json += cp == 0x7f ? 1 : 6;

    } else {
        *json += n;
    }
}
