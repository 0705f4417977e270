/*
 * A ledger row's COPY line (quota_row_copy()) back into the row's JSON,
 * for the few places that need JSON: the JSON path (a schema without
 * quota.ingest()) and the file of rows PostgreSQL refused, which support
 * reads.  The queue and the spool keep the line alone, so a request pays
 * for one form of its row, not two.  quota_copy_row() of the JSON gives
 * the line back, byte for byte (t/unit/test_row_copy.c).  Pure C, no
 * nginx.
 */

#include <string.h>

#include "quota_copy.h"
#include "quota_json.h"


/* a field of the line, read with COPY's escapes undone */
typedef struct {
    const unsigned char  *p;
    const unsigned char  *end;
} quota_copy_field_t;


static int
quota_copy_get(quota_copy_field_t *f)
{
    unsigned  c;

    if (f->p == f->end) {
        return -1;
    }

    c = *f->p++;

    if (c != '\\' || f->p == f->end) {
        return (int) c;
    }

    c = *f->p++;

    switch (c) {
    case 't': return '\t';
    case 'n': return '\n';
    case 'r': return '\r';
    case 'b': return '\b';
    case 'f': return '\f';
    case 'v': return '\v';
    default:  return (int) c;
    }
}


/* a byte of a JSON string, as quota_out_string() writes it */
static void
quota_copy_json_byte(quota_out_t *o, unsigned c)
{
    static const char  hex[] = "0123456789abcdef";

    char  esc[6];

    if (c == '"' || c == '\\') {
        esc[0] = '\\';
        esc[1] = (char) c;
        quota_out_bytes(o, esc, 2);

    } else if (c < 0x20 || c == 0x7f) {
        esc[0] = '\\';
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 0xf];
        quota_out_bytes(o, esc, 6);

    } else {
        esc[0] = (char) c;
        quota_out_bytes(o, esc, 1);
    }
}


/*
 * text up to the end of the field, or, inside an array (element), to the
 * closing quote, whose backslashes escape the next byte
 */
static void
quota_copy_json_text(quota_out_t *o, quota_copy_field_t *f, int element)
{
    int  c;

    quota_out_bytes(o, "\"", 1);

    while ((c = quota_copy_get(f)) != -1) {
        if (element && c == '"') {
            break;
        }

        if (element && c == '\\') {
            c = quota_copy_get(f);
            if (c == -1) {
                break;
            }
        }

        quota_copy_json_byte(o, (unsigned) c);
    }

    quota_out_bytes(o, "\"", 1);
}


/* an array literal: quoted elements are strings, NULL null, others raw */
static void
quota_copy_json_array(quota_out_t *o, quota_copy_field_t *f)
{
    int       c, n;
    unsigned  first = 1;
    char      tok[24];

    quota_out_bytes(o, "[", 1);

    if (quota_copy_get(f) != '{') {
        quota_out_bytes(o, "]", 1);
        return;
    }

    for (c = quota_copy_get(f); c != -1 && c != '}'; /* void */) {
        if (c == ',') {
            c = quota_copy_get(f);
            continue;
        }

        if (!first) {
            quota_out_bytes(o, ",", 1);
        }

        first = 0;

        if (c == '"') {
            quota_copy_json_text(o, f, 1);
            c = quota_copy_get(f);
            continue;
        }

        /* a number, or NULL */

        for (n = 0; c != -1 && c != ',' && c != '}' && n < 24; n++) {
            tok[n] = (char) c;
            c = quota_copy_get(f);
        }

        if (n == 4 && memcmp(tok, "NULL", 4) == 0) {
            quota_out_str(o, "null");

        } else {
            quota_out_bytes(o, tok, n);
        }
    }

    quota_out_bytes(o, "]", 1);
}


size_t
quota_copy_json(char *buf, size_t size, const unsigned char *line,
    size_t len)
{
    int                   c;
    char                  b;
    size_t                i;
    quota_out_t           o = { buf, size, 0 };
    quota_copy_field_t    f;
    const unsigned char  *p, *end;

    end = line + len;

    if (len && end[-1] == '\n') {
        end--;
    }

    quota_out_bytes(&o, "{", 1);

    for (i = 0, p = line; i < QUOTA_COPY_COLUMNS; i++) {
        f.p = p;
        f.end = memchr(p, '\t', end - p);
        f.end = f.end ? f.end : end;
        p = f.end < end ? f.end + 1 : end;

        quota_out_str(&o, i ? ",\"" : "\"");
        quota_out_bytes(&o, quota_copy_columns[i].name,
                        quota_copy_columns[i].len);
        quota_out_bytes(&o, "\":", 2);

        if (f.end - f.p == 2 && f.p[0] == '\\' && f.p[1] == 'N') {
            quota_out_str(&o, "null");
            continue;
        }

        switch (quota_copy_columns[i].kind) {

        case QUOTA_COPY_TEXT:
            quota_copy_json_text(&o, &f, 0);
            break;

        case QUOTA_COPY_ARRAY:
            quota_copy_json_array(&o, &f);
            break;

        default:
            /* a number, or "limits": JSON text as it is */
            while ((c = quota_copy_get(&f)) != -1) {
                b = (char) c;
                quota_out_bytes(&o, &b, 1);
            }
        }
    }

    quota_out_bytes(&o, "}", 1);

    return o.len;
}
