/*
 * Ledger rows as COPY lines; see quota_copy.h.  One pass finds where each
 * column's value lies in the JSON (a repeated key: the last, as jsonb
 * keeps it), a second writes the line: text unescaped from JSON and
 * escaped for COPY (backslash, tab, newline, carriage return), arrays as
 * array literals of quoted elements, "limits" as its JSON text.  Every
 * row of a batch goes through here, so the common row (keys in
 * quota_row_json()'s order, strings without escapes) is copied in runs,
 * not byte by byte.
 */

#include <stdint.h>
#include <string.h>

#include "quota_copy.h"


#define QUOTA_COPY_DEPTH  32

typedef enum {
    QUOTA_JSON_NONE = 0,         /* the row lacks it: NULL */
    QUOTA_JSON_NULL,
    QUOTA_JSON_STRING,
    QUOTA_JSON_RAW,              /* a number, true or false */
    QUOTA_JSON_ARRAY,
    QUOTA_JSON_OTHER             /* an object */
} quota_json_type_e;

typedef struct {
    const unsigned char  *start;
    const unsigned char  *end;
    quota_json_type_e     type;
    int                   escaped;    /* a string with escapes */
} quota_copy_value_t;


#define C(name, kind)  { name, sizeof(name) - 1, kind }

const quota_copy_column_t  quota_copy_columns[QUOTA_COPY_COLUMNS] = {
    C("request_id", QUOTA_COPY_TEXT),
    C("ts_ms", QUOTA_COPY_INTEGER),
    C("host", QUOTA_COPY_TEXT),
    C("resource_type", QUOTA_COPY_TEXT),
    C("scope_names", QUOTA_COPY_ARRAY),
    C("scope_ids", QUOTA_COPY_ARRAY),
    C("decision", QUOTA_COPY_TEXT),
    C("estimated_micros", QUOTA_COPY_INTEGER),
    C("actual_micros", QUOTA_COPY_INTEGER),
    C("upstream_status", QUOTA_COPY_INTEGER),
    C("http_status", QUOTA_COPY_INTEGER),
    C("model", QUOTA_COPY_TEXT),
    C("prompt_tokens", QUOTA_COPY_INTEGER),
    C("completion_tokens", QUOTA_COPY_INTEGER),
    C("cached_tokens", QUOTA_COPY_INTEGER),
    C("limits", QUOTA_COPY_JSON),
    C("epoch", QUOTA_COPY_INTEGER),
    C("alerts", QUOTA_COPY_ARRAY),
    C("tokens", QUOTA_COPY_INTEGER)
};

#undef C


static inline const unsigned char *
quota_copy_ws(const unsigned char *p, const unsigned char *end)
{
    /* every byte that ends whitespace is above ' ': one test for most */
    while (p < end && *p <= ' '
           && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    {
        p++;
    }

    return p;
}


/*
 * Eight bytes at a time: the lanes of those that are one of two bytes, or
 * below a third (at most 0x80), flagged by the borrow of a bytewise
 * subtraction (Hacker's Delight, 6-1).  A borrow may flag a lane above a
 * flagged one as well, never one below it: the lowest flag is exact, and
 * quota_copy_first() finds it.
 */

#define QUOTA_COPY_ONES   0x0101010101010101ULL
#define QUOTA_COPY_HIGHS  0x8080808080808080ULL

static inline uint64_t
quota_copy_flags8(const unsigned char *p, unsigned a, unsigned b,
    unsigned below)
{
    uint64_t  w, x, y;

    memcpy(&w, p, 8);

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif

    x = w ^ (QUOTA_COPY_ONES * a);
    y = w ^ (QUOTA_COPY_ONES * b);

    return (((x - QUOTA_COPY_ONES) & ~x) | ((y - QUOTA_COPY_ONES) & ~y)
            | ((w - QUOTA_COPY_ONES * below) & ~w))
           & QUOTA_COPY_HIGHS;
}


/* the first byte flagged, bytes numbered from p up */
static inline unsigned
quota_copy_first(uint64_t flags)
{
    return (unsigned) __builtin_ctzll(flags) / 8;
}


static int
quota_copy_hex(const unsigned char *p, unsigned *v)
{
    unsigned  i, c;

    *v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            c -= '0';

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            c = (c | 0x20) - 'a' + 10;

        } else {
            return -1;
        }

        *v = *v << 4 | c;
    }

    return 0;
}


/*
 * a string from its opening quote: the position after its closing one,
 * NULL if it is not one; *escaped says whether it holds escapes
 */
static const unsigned char *
quota_copy_string(const unsigned char *p, const unsigned char *end,
    int *escaped)
{
    unsigned  v;
    uint64_t  f;

    *escaped = 0;

    p++;

    /* eight bytes at a time to the first '"', '\\' or control byte */
    while (end - p >= 8) {
        f = quota_copy_flags8(p, '"', '\\', 0x20);

        if (f == 0) {
            p += 8;
            continue;
        }

        p += quota_copy_first(f);

        if (*p == '"') {
            return p + 1;
        }

        if (*p < 0x20) {
            return NULL;
        }

        /* an escape: the loop below checks it, and the rest */
        break;
    }

    for ( /* void */ ; p < end; p++) {
        if (*p == '"') {
            return p + 1;
        }

        if (*p < 0x20) {
            return NULL;
        }

        if (*p == '\\') {
            *escaped = 1;

            if (++p == end) {
                return NULL;
            }

            if (*p == 'u') {
                if (end - p < 5 || quota_copy_hex(p + 1, &v) != 0) {
                    return NULL;
                }

                p += 4;

            } else if (strchr("\"\\/bfnrt", *p) == NULL || *p == '\0') {
                return NULL;
            }
        }
    }

    return NULL;
}


static const unsigned char *
quota_copy_number(const unsigned char *p, const unsigned char *end)
{
    const unsigned char  *start = p;

    while (p < end && ((unsigned) (*p - '0') < 10 || *p == '-' || *p == '+'
                       || *p == '.' || *p == 'e' || *p == 'E'))
    {
        p++;
    }

    return p > start ? p : NULL;
}


/* any value: the position after it, NULL if it is not one */
static const unsigned char *
quota_copy_skip(const unsigned char *p, const unsigned char *end,
    unsigned depth, quota_json_type_e *type, int *escaped)
{
    int                esc;
    unsigned char      close;
    quota_json_type_e  t;

    *escaped = 0;

    if (p == end || depth > QUOTA_COPY_DEPTH) {
        return NULL;
    }

    switch (*p) {

    case '"':
        *type = QUOTA_JSON_STRING;
        return quota_copy_string(p, end, escaped);

    case 'n':
        *type = QUOTA_JSON_NULL;
        return end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;

    case 't':
        *type = QUOTA_JSON_RAW;
        return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;

    case 'f':
        *type = QUOTA_JSON_RAW;
        return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;

    case '[':
    case '{':
        *type = *p == '[' ? QUOTA_JSON_ARRAY : QUOTA_JSON_OTHER;
        close = *p == '[' ? ']' : '}';
        p = quota_copy_ws(p + 1, end);

        if (p < end && *p == close) {
            return p + 1;
        }

        for ( ;; ) {
            if (close == '}') {
                if (p == end || *p != '"') {
                    return NULL;
                }

                p = quota_copy_string(p, end, &esc);
                if (p == NULL) {
                    return NULL;
                }

                p = quota_copy_ws(p, end);
                if (p == end || *p != ':') {
                    return NULL;
                }

                p = quota_copy_ws(p + 1, end);
            }

            p = quota_copy_skip(p, end, depth + 1, &t, &esc);
            if (p == NULL) {
                return NULL;
            }

            p = quota_copy_ws(p, end);

            if (p < end && *p == ',') {
                p = quota_copy_ws(p + 1, end);
                continue;
            }

            return p < end && *p == close ? p + 1 : NULL;
        }

    default:
        *type = QUOTA_JSON_RAW;
        return quota_copy_number(p, end);
    }
}


/* a byte of text as COPY reads it back */
static inline unsigned char *
quota_copy_byte(unsigned char *d, unsigned c)
{
    switch (c) {
    case '\\': *d++ = '\\'; *d++ = '\\'; break;
    case '\n': *d++ = '\\'; *d++ = 'n'; break;
    case '\r': *d++ = '\\'; *d++ = 'r'; break;
    case '\t': *d++ = '\\'; *d++ = 't'; break;
    default:   *d++ = (unsigned char) c;
    }

    return d;
}


/*
 * JSON text as COPY reads it back: the runs between the bytes COPY
 * escapes copied whole ("limits" holds none of them unless a zone name
 * or whitespace does)
 */
static unsigned char *
quota_copy_runs(unsigned char *d, const unsigned char *p,
    const unsigned char *end)
{
    uint64_t              f;
    const unsigned char  *run;

    while (p < end) {
        run = p;

        /* no '\\' and nothing below ' ' (where tab, newline and CR are) */
        while (end - p >= 8) {
            f = quota_copy_flags8(p, '\\', '\\', ' ');

            if (f) {
                p += quota_copy_first(f);
                break;
            }

            p += 8;
        }

        for ( /* void */ ; p < end; p++) {
            if (*p == '\\' || *p == '\n' || *p == '\r' || *p == '\t') {
                break;
            }
        }

        d = (unsigned char *) memcpy(d, run, p - run) + (p - run);

        if (p < end) {
            d = quota_copy_byte(d, *p++);
        }
    }

    return d;
}


/* a character of a string, and of an array element: '"' and '\' escaped */
static inline unsigned char *
quota_copy_char(unsigned char *d, unsigned c, int element)
{
    if (element && (c == '"' || c == '\\')) {
        d = quota_copy_byte(d, '\\');
    }

    return quota_copy_byte(d, c);
}


/*
 * the contents of a string known to be well formed (quota_copy_string),
 * unescaped; NULL for what PostgreSQL's text cannot hold (\u0000, a lone
 * surrogate)
 */
static unsigned char *
quota_copy_text(unsigned char *d, const unsigned char *p,
    const unsigned char *end, int element)
{
    unsigned  c, lo;

    for (p++, end--; p < end; p++) {
        if (*p != '\\') {
            d = quota_copy_char(d, *p, element);
            continue;
        }

        switch (*++p) {
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': c = 0; break;
        default:  c = *p;
        }

        if (*p != 'u') {
            d = quota_copy_char(d, c, element);
            continue;
        }

        (void) quota_copy_hex(p + 1, &c);
        p += 4;

        if (c == 0 || (c >= 0xdc00 && c <= 0xdfff)) {
            return NULL;
        }

        if (c >= 0xd800 && c <= 0xdbff) {
            if (end - p < 7 || p[1] != '\\' || p[2] != 'u'
                || quota_copy_hex(p + 3, &lo) != 0
                || lo < 0xdc00 || lo > 0xdfff)
            {
                return NULL;
            }

            c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
        }

        if (c < 0x80) {
            d = quota_copy_char(d, c, element);

        } else if (c < 0x800) {
            *d++ = (unsigned char) (0xc0 | c >> 6);
            *d++ = (unsigned char) (0x80 | (c & 0x3f));

        } else if (c < 0x10000) {
            *d++ = (unsigned char) (0xe0 | c >> 12);
            *d++ = (unsigned char) (0x80 | (c >> 6 & 0x3f));
            *d++ = (unsigned char) (0x80 | (c & 0x3f));

        } else {
            *d++ = (unsigned char) (0xf0 | c >> 18);
            *d++ = (unsigned char) (0x80 | (c >> 12 & 0x3f));
            *d++ = (unsigned char) (0x80 | (c >> 6 & 0x3f));
            *d++ = (unsigned char) (0x80 | (c & 0x3f));
        }
    }

    return d;
}


/*
 * a string's contents: without escapes, a string holds no byte that COPY
 * or an array literal escapes (no '"', '\\' or control byte), so they
 * go as they are
 */
static unsigned char *
quota_copy_string_text(unsigned char *d, const unsigned char *p,
    const unsigned char *end, int escaped, int element)
{
    if (!escaped) {
        return (unsigned char *) memcpy(d, p + 1, end - p - 2) + (end - p - 2);
    }

    return quota_copy_text(d, p, end, element);
}


/* a JSON array of strings, numbers and nulls as an array literal */
static unsigned char *
quota_copy_array(unsigned char *d, const unsigned char *p,
    const unsigned char *end)
{
    int                   esc;
    quota_json_type_e     t;
    const unsigned char  *v;

    *d++ = '{';
    p = quota_copy_ws(p + 1, end);

    while (p < end && *p != ']') {
        v = quota_copy_skip(p, end, 1, &t, &esc);

        switch (t) {

        case QUOTA_JSON_STRING:
            *d++ = '"';
            d = quota_copy_string_text(d, p, v, esc, 1);
            if (d == NULL) {
                return NULL;
            }
            *d++ = '"';
            break;

        case QUOTA_JSON_NULL:
            d = (unsigned char *) memcpy(d, "NULL", 4) + 4;
            break;

        case QUOTA_JSON_RAW:
            if (*p == 't' || *p == 'f') {
                return NULL;
            }
            d = (unsigned char *) memcpy(d, p, v - p) + (v - p);
            break;

        default:
            return NULL;
        }

        p = quota_copy_ws(v, end);

        if (*p == ',') {
            *d++ = ',';
            p = quota_copy_ws(p + 1, end);
        }
    }

    *d++ = '}';

    return d;
}


size_t
quota_copy_row(unsigned char *dst, const unsigned char *json, size_t len)
{
    int                    esc;
    size_t                 i, n, next;
    unsigned char         *d;
    const unsigned char   *p, *end, *key, *key_end, *v;
    quota_json_type_e      t;
    quota_copy_value_t     values[QUOTA_COPY_COLUMNS];

    memset(values, 0, sizeof(values));
    next = 0;

    p = json;
    end = json + len;

    p = quota_copy_ws(p, end);
    if (p == end || *p != '{') {
        return 0;
    }

    p = quota_copy_ws(p + 1, end);

    while (p < end && *p != '}') {
        if (*p != '"') {
            return 0;
        }

        key = p + 1;
        key_end = quota_copy_string(p, end, &esc);
        if (key_end == NULL || esc) {
            return 0;
        }

        p = quota_copy_ws(key_end--, end);
        if (p == end || *p != ':') {
            return 0;
        }

        p = quota_copy_ws(p + 1, end);

        v = quota_copy_skip(p, end, 0, &t, &esc);
        if (v == NULL) {
            return 0;
        }

        /* from the column after the last key's: quota_row_json()'s order */

        for (n = 0; n < QUOTA_COPY_COLUMNS; n++) {
            i = (next + n) % QUOTA_COPY_COLUMNS;

            if ((size_t) (key_end - key) == quota_copy_columns[i].len
                && memcmp(key, quota_copy_columns[i].name,
                          quota_copy_columns[i].len) == 0)
            {
                values[i].start = p;
                values[i].end = v;
                values[i].type = t;
                values[i].escaped = esc;
                next = i + 1;
                break;
            }
        }

        p = quota_copy_ws(v, end);

        if (p < end && *p == ',') {
            p = quota_copy_ws(p + 1, end);

            if (p < end && *p == '}') {
                return 0;
            }

        } else if (p < end && *p != '}') {
            return 0;
        }
    }

    if (p == end || quota_copy_ws(p + 1, end) != end) {
        return 0;
    }

    d = dst;

    for (i = 0; i < QUOTA_COPY_COLUMNS; i++) {
        if (i) {
            *d++ = '\t';
        }

        p = values[i].start;
        v = values[i].end;

        switch (values[i].type) {

        case QUOTA_JSON_NONE:
        case QUOTA_JSON_NULL:
            *d++ = '\\';
            *d++ = 'N';
            continue;

        case QUOTA_JSON_STRING:
            if (quota_copy_columns[i].kind <= QUOTA_COPY_INTEGER) {
                d = quota_copy_string_text(d, p, v, values[i].escaped, 0);
                if (d == NULL) {
                    return 0;
                }
                continue;
            }
            break;

        case QUOTA_JSON_RAW:
            if (quota_copy_columns[i].kind <= QUOTA_COPY_INTEGER) {
                d = (unsigned char *) memcpy(d, p, v - p) + (v - p);
                continue;
            }
            break;

        case QUOTA_JSON_ARRAY:
            if (quota_copy_columns[i].kind == QUOTA_COPY_ARRAY) {
                d = quota_copy_array(d, p, v);
                if (d == NULL) {
                    return 0;
                }
                continue;
            }
            break;

        default:
            break;
        }

        if (quota_copy_columns[i].kind != QUOTA_COPY_JSON) {
            return 0;
        }

        /* limits: the JSON text itself */

        d = quota_copy_runs(d, p, v);
    }

    *d++ = '\n';

    return d - dst;
}


size_t
quota_copy_split(const unsigned char *row, size_t len,
    const unsigned char **line, size_t *line_len)
{
    const unsigned char  *nl;

    *line = NULL;
    *line_len = 0;

    /* a line alone: what this nginx queues and spools */

    if (len && row[0] != '{' && row[len - 1] == '\n') {
        *line = row;
        *line_len = len;
        return 0;
    }

    nl = memchr(row, '\n', len);

    /* a line is whole: it ends with its own newline */

    if (nl == NULL || nl + 1 == row + len || row[len - 1] != '\n') {
        return nl ? (size_t) (nl - row) : len;
    }

    *line = nl + 1;
    *line_len = row + len - (nl + 1);

    return nl - row;
}
