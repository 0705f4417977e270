/*
 * The events of a Chat Completions stream the gate asked for the usage
 * of.  An event is judged only when whole, and only as far as it must
 * be: the one data line's top-level members are walked without building
 * a tree, and jansson is asked only before an event is dropped, so that
 * nothing that is not exactly the usage-only chunk ever is.
 */

#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "quota_usage_trim.h"


#define QUOTA_TRIM_NONE       SIZE_MAX
#define QUOTA_TRIM_LAST_NULL  ",\"usage\":null}"


/* the top-level members that matter, as offsets into the JSON text */
typedef struct {
    size_t                choices_start;
    size_t                choices_end;
    size_t                usage_key;        /* its opening quote */
    size_t                usage_start;
    size_t                usage_end;
    size_t                usage_comma;      /* the comma before it */
} quota_trim_members_t;


static int quota_trim_data(const unsigned char *ev, size_t len,
    size_t *start, size_t *end);
static int quota_trim_members(const unsigned char *p, size_t len,
    quota_trim_members_t *m);
static size_t quota_trim_ws(const unsigned char *p, size_t i, size_t len);
static size_t quota_trim_value(const unsigned char *p, size_t i, size_t len);
static size_t quota_trim_string(const unsigned char *p, size_t i, size_t len);
static int quota_trim_is(const unsigned char *p, size_t start, size_t end,
    const char *s);
static int quota_trim_is_usage_chunk(const unsigned char *p, size_t len);


void
quota_sse_split_init(quota_sse_split_t *s)
{
    s->cr = 0;
    s->line_empty = 1;
    s->lf_owed = 0;
}


size_t
quota_sse_split(quota_sse_split_t *s, const unsigned char *p, size_t len)
{
    size_t                i;
    const unsigned char  *nl, *cr;

    for (i = 0; i < len; /* void */ ) {

        if (!s->line_empty) {
            /* the rest of a line: to its end at once */

            nl = memchr(p + i, '\n', len - i);
            cr = memchr(p + i, '\r', (nl ? (size_t) (nl - p) : len) - i);

            if (cr == NULL && nl == NULL) {
                return 0;
            }

            i = (size_t) ((cr ? cr : nl) - p);
            s->cr = (p[i] == '\r');
            s->line_empty = 1;
            i++;
            continue;
        }

        if (p[i] == '\n' && s->cr) {
            /* the \n of a \r\n whose \r ended the line */
            s->cr = 0;
            i++;
            continue;
        }

        s->cr = 0;

        if (p[i] != '\n' && p[i] != '\r') {
            s->line_empty = 0;
            i++;
            continue;
        }

        /* a blank line: the event ends with its terminator */

        if (p[i] == '\r') {
            if (i + 1 < len) {
                return p[i + 1] == '\n' ? i + 2 : i + 1;
            }

            s->lf_owed = 1;
        }

        return i + 1;
    }

    return 0;
}


int
quota_sse_split_owed(quota_sse_split_t *s, const unsigned char *p, size_t len)
{
    if (!s->lf_owed || len == 0) {
        return 0;
    }

    s->lf_owed = 0;

    return p[0] == '\n';
}


size_t
quota_usage_trim_event(unsigned char *ev, size_t len)
{
    size_t                 start, end, from, to, j;
    quota_trim_members_t   m;

    if (quota_trim_data(ev, len, &start, &end) != 0) {
        return len;
    }

    /*
     * As OpenAI orders a chunk, "usage" last: in valid JSON a data line
     * that ends so can only end with a top-level member, and the others
     * are walked in full.
     */

    if (end - start >= sizeof(QUOTA_TRIM_LAST_NULL) - 1
        && memcmp(ev + end - (sizeof(QUOTA_TRIM_LAST_NULL) - 1),
                  QUOTA_TRIM_LAST_NULL, sizeof(QUOTA_TRIM_LAST_NULL) - 1)
           == 0)
    {
        from = end - (sizeof(QUOTA_TRIM_LAST_NULL) - 1);
        to = end - 1;
        memmove(ev + from, ev + to, len - to);

        return len - (to - from);
    }

    if (quota_trim_members(ev + start, end - start, &m) != 0
        || m.usage_key == QUOTA_TRIM_NONE)
    {
        return len;
    }

    if (m.choices_start != QUOTA_TRIM_NONE
        && ev[start + m.choices_start] == '['
        && quota_trim_ws(ev + start, m.choices_start + 1, end - start) + 1
           == m.choices_end
        && ev[start + m.usage_start] == '{'
        && quota_trim_is_usage_chunk(ev + start, end - start))
    {
        return 0;
    }

    if (!quota_trim_is(ev + start, m.usage_start, m.usage_end, "null")) {
        return len;
    }

    /* the member and one comma: the one before it, else the one after */

    if (m.usage_comma != QUOTA_TRIM_NONE) {
        from = m.usage_comma;
        to = m.usage_end;

    } else {
        from = m.usage_key;
        j = quota_trim_ws(ev + start, m.usage_end, end - start);
        to = (j < end - start && ev[start + j] == ',') ? j + 1 : m.usage_end;
    }

    memmove(ev + start + from, ev + start + to, len - start - to);

    return len - (to - from);
}


/*
 * The value of the event's one data line; -1 for an event of any other
 * fields, several data lines or none: such an event is not a chunk.
 */

static int
quota_trim_data(const unsigned char *ev, size_t len, size_t *start,
    size_t *end)
{
    size_t                i, line;
    int                   found;
    const unsigned char  *nl, *cr;

    found = 0;
    *start = *end = 0;

    for (i = 0; i < len; /* void */ ) {
        line = i;

        nl = memchr(ev + i, '\n', len - i);
        cr = memchr(ev + i, '\r', (nl ? (size_t) (nl - ev) : len) - i);
        i = cr ? (size_t) (cr - ev) : nl ? (size_t) (nl - ev) : len;

        if (i > line) {
            if (found || i - line < 5 || memcmp(ev + line, "data:", 5) != 0)
            {
                return -1;
            }

            found = 1;
            *start = line + 5 + (i - line > 5 && ev[line + 5] == ' ');
            *end = i;
        }

        i += (i + 1 < len && ev[i] == '\r' && ev[i + 1] == '\n') ? 2 : 1;
    }

    return found ? 0 : -1;
}


static int
quota_trim_members(const unsigned char *p, size_t len, quota_trim_members_t *m)
{
    size_t  i, key, key_end, value, value_end, comma;

    m->choices_start = m->choices_end = QUOTA_TRIM_NONE;
    m->usage_key = m->usage_start = m->usage_end = QUOTA_TRIM_NONE;
    m->usage_comma = QUOTA_TRIM_NONE;

    i = quota_trim_ws(p, 0, len);

    if (i == len || p[i] != '{') {
        return -1;
    }

    comma = QUOTA_TRIM_NONE;
    i = quota_trim_ws(p, i + 1, len);

    if (i < len && p[i] == '}') {
        return quota_trim_ws(p, i + 1, len) == len ? 0 : -1;
    }

    for ( ;; ) {
        key = i;
        key_end = quota_trim_string(p, i, len);

        if (key_end == 0) {
            return -1;
        }

        i = quota_trim_ws(p, key_end, len);

        if (i == len || p[i] != ':') {
            return -1;
        }

        value = quota_trim_ws(p, i + 1, len);
        value_end = quota_trim_value(p, value, len);

        if (value_end == 0) {
            return -1;
        }

        if (quota_trim_is(p, key, key_end, "\"choices\"")) {
            m->choices_start = value;
            m->choices_end = value_end;

        } else if (quota_trim_is(p, key, key_end, "\"usage\"")) {
            m->usage_key = key;
            m->usage_start = value;
            m->usage_end = value_end;
            m->usage_comma = comma;
        }

        i = quota_trim_ws(p, value_end, len);

        if (i < len && p[i] == ',') {
            comma = i;
            i = quota_trim_ws(p, i + 1, len);
            continue;
        }

        if (i < len && p[i] == '}') {
            return quota_trim_ws(p, i + 1, len) == len ? 0 : -1;
        }

        return -1;
    }
}


static size_t
quota_trim_ws(const unsigned char *p, size_t i, size_t len)
{
    while (i < len
           && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
    {
        i++;
    }

    return i;
}


/* the offset just past the value at i, 0 if none is there */

static size_t
quota_trim_value(const unsigned char *p, size_t i, size_t len)
{
    size_t  depth;

    if (i == len) {
        return 0;
    }

    if (p[i] == '"') {
        return quota_trim_string(p, i, len);
    }

    if (p[i] != '{' && p[i] != '[') {
        while (i < len && p[i] != ',' && p[i] != '}' && p[i] != ']'
               && p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
        {
            i++;
        }

        return i;
    }

    for (depth = 0; i < len; i++) {

        if (p[i] == '"') {
            i = quota_trim_string(p, i, len);

            if (i == 0) {
                return 0;
            }

            i--;
            continue;
        }

        if (p[i] == '{' || p[i] == '[') {
            depth++;

        } else if ((p[i] == '}' || p[i] == ']') && --depth == 0) {
            return i + 1;
        }
    }

    return 0;
}


static size_t
quota_trim_string(const unsigned char *p, size_t i, size_t len)
{
    if (i == len || p[i] != '"') {
        return 0;
    }

    for (i++; i < len; i++) {
        if (p[i] == '\\') {
            i++;

        } else if (p[i] == '"') {
            return i + 1;
        }
    }

    return 0;
}


static int
quota_trim_is(const unsigned char *p, size_t start, size_t end, const char *s)
{
    size_t  n;

    n = strlen(s);

    return end - start == n && memcmp(p + start, s, n) == 0;
}


static int
quota_trim_is_usage_chunk(const unsigned char *p, size_t len)
{
    int      yes;
    json_t  *root, *choices;

    root = json_loadb((const char *) p, len, 0, NULL);

    choices = json_object_get(root, "choices");

    yes = json_is_array(choices) && json_array_size(choices) == 0
          && json_is_object(json_object_get(root, "usage"));

    json_decref(root);

    return yes;
}
