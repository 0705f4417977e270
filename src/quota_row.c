/*
 * Ledger rows in JSON, and as the COPY line quota_copy_row() makes of that
 * JSON, written from the row itself so that a batch need not parse what
 * its rows wrote.  Scope ids go to PostgreSQL in display form: text
 * columns hold neither NUL nor invalid UTF-8, and support should read
 * "acme", not "%61%63%6D%65", so only what must be escaped is.
 */

#include <string.h>

#include "quota_row.h"


/*
 * display form; the '"' and '\\' it keeps are escaped inside a JSON string
 * (mode QUOTA_ROW_JSON), and as an element of an array literal in COPY text
 * (QUOTA_ROW_COPY: a backslash before either, then COPY's doubling of
 * every backslash)
 */

#define QUOTA_ROW_PLAIN  0
#define QUOTA_ROW_JSON   1
#define QUOTA_ROW_COPY   2

static void
quota_row_display(quota_out_t *o, const unsigned char *s, size_t len,
    int mode)
{
    static const char  hex[] = "0123456789ABCDEF";

    char    esc[3];
    size_t  i, n;

    for (i = 0; i < len; /* void */) {

        if (s[i] >= 0x80) {
            n = quota_utf8_len(s + i, len - i);

            if (n) {
                quota_out_bytes(o, s + i, n);
                i += n;
                continue;
            }

        } else if (s[i] >= 0x20 && s[i] != 0x7f
                   && s[i] != '%' && s[i] != '/' && s[i] != '=')
        {
            if (mode == QUOTA_ROW_JSON && (s[i] == '"' || s[i] == '\\')) {
                quota_out_bytes(o, "\\", 1);

            } else if (mode == QUOTA_ROW_COPY && s[i] == '"') {
                quota_out_bytes(o, "\\\\", 2);

            } else if (mode == QUOTA_ROW_COPY && s[i] == '\\') {
                quota_out_bytes(o, "\\\\\\", 3);
            }

            quota_out_bytes(o, s + i, 1);
            i++;
            continue;
        }

        esc[0] = '%';
        esc[1] = hex[s[i] >> 4];
        esc[2] = hex[s[i] & 0xf];
        quota_out_bytes(o, esc, 3);
        i++;
    }
}


size_t
quota_display(char *buf, size_t size, const unsigned char *s, size_t len)
{
    quota_out_t  o = { buf, size, 0 };

    quota_row_display(&o, s, len, QUOTA_ROW_PLAIN);

    return o.len;
}


static void
quota_row_string(quota_out_t *o, const char *name, const unsigned char *s,
    size_t len)
{
    quota_out_str(o, name);

    if (s == NULL) {
        quota_out_str(o, "null");

    } else {
        quota_out_string(o, s, len);
    }
}


static void
quota_row_int(quota_out_t *o, const char *name, int64_t v, int null)
{
    quota_out_str(o, name);

    if (null) {
        quota_out_str(o, "null");

    } else {
        quota_out_int(o, v);
    }
}


/*
 * The bound: a JSON string byte takes at most 6 ("\u00XX", or "\ufffd" for
 * a byte of invalid UTF-8), a display byte at most 3 ("%XX"; '"' and '\\'
 * take 2), a number at most 20; QUOTA_ROW_FIXED covers the names and
 * punctuation with the numbers and the decision (470 bytes at most),
 * QUOTA_ROW_LIMIT one entry of "limits" with its numbers, QUOTA_ROW_ALERT
 * one threshold of "alerts" ("65535,").
 */

#define QUOTA_ROW_FIXED  512
#define QUOTA_ROW_LIMIT  256
#define QUOTA_ROW_ALERT  6


static void
quota_row_limit_entry(quota_out_t *o, const quota_row_limit_t *l,
    int64_t limit, unsigned soft, size_t *n)
{
    if (limit < 0) {
        return;
    }

    quota_out_str(o, (*n)++ ? ",{\"depth\":" : "{\"depth\":");
    quota_out_int(o, l->depth);
    quota_out_str(o, ",\"period\":\"");
    quota_out_str(o, quota_period_name(l->period));

    /* usd and UTC go without saying: rows written before units read so */

    if (l->unit != QUOTA_UNIT_USD) {
        quota_out_str(o, "\",\"unit\":\"");
        quota_out_str(o, quota_unit_name(l->unit));
    }

    if (l->tz) {
        /* a zone name is [A-Za-z0-9/_+-]: nothing to escape */
        quota_out_str(o, "\",\"tz\":\"");
        quota_out_str(o, l->tz);
    }

    quota_out_str(o, "\",\"limit_micros\":");
    quota_out_int(o, limit);
    quota_out_str(o, soft ? ",\"soft\":true}" : "}");
}


size_t
quota_row_json_max(const quota_row_t *row)
{
    size_t  i, n;

    n = QUOTA_ROW_FIXED
        + 6 * (row->request_id_len + row->host_len + row->meter_len
               + row->model_len)
        + QUOTA_ROW_LIMIT * row->nlimits
        + QUOTA_ROW_ALERT * row->nalerts;

    for (i = 0; i < row->nscopes; i++) {
        n += row->scopes[i].name_len + 4 + 3 * row->scopes[i].value_len + 4;
    }

    /* a counter's zone is written in its hard and its soft entry */

    for (i = 0; i < row->nlimits; i++) {
        if (row->limits[i].tz) {
            n += 2 * strlen(row->limits[i].tz);
        }
    }

    return n;
}


size_t
quota_row_json(char *buf, size_t size, const quota_row_t *row)
{
    size_t       i, n;
    quota_out_t  o = { buf, size, 0 };

    quota_row_string(&o, "{\"request_id\":", row->request_id,
                     row->request_id_len);
    quota_row_int(&o, ",\"ts_ms\":", row->ts_ms, 0);
    quota_row_string(&o, ",\"host\":", row->host, row->host_len);
    quota_row_string(&o, ",\"resource_type\":", row->meter, row->meter_len);

    quota_out_str(&o, ",\"scope_names\":[");

    for (i = 0; i < row->nscopes; i++) {
        quota_out_str(&o, i ? ",\"" : "\"");
        quota_out_bytes(&o, row->scopes[i].name, row->scopes[i].name_len);
        quota_out_str(&o, "\"");
    }

    quota_out_str(&o, "],\"scope_ids\":[");

    for (i = 0; i < row->nscopes; i++) {
        quota_out_str(&o, i ? ",\"" : "\"");
        quota_row_display(&o, row->scopes[i].value, row->scopes[i].value_len,
                          QUOTA_ROW_JSON);
        quota_out_str(&o, "\"");
    }

    quota_out_str(&o, "],\"decision\":\"");
    quota_out_str(&o, row->decision);
    quota_out_str(&o, "\"");

    quota_row_int(&o, ",\"estimated_micros\":", row->estimated, 0);
    quota_row_int(&o, ",\"actual_micros\":", row->actual, 0);
    quota_row_int(&o, ",\"upstream_status\":", row->upstream_status,
                  row->upstream_status == 0);
    quota_row_int(&o, ",\"http_status\":", row->http_status, 0);
    quota_row_string(&o, ",\"model\":", row->model, row->model_len);
    quota_row_int(&o, ",\"prompt_tokens\":", row->prompt_tokens,
                  row->prompt_tokens < 0);
    quota_row_int(&o, ",\"completion_tokens\":", row->completion_tokens,
                  row->completion_tokens < 0);
    quota_row_int(&o, ",\"cached_tokens\":", row->cached_tokens,
                  row->cached_tokens < 0);

    if (row->tokens >= 0) {
        quota_row_int(&o, ",\"tokens\":", row->tokens, 0);
    }

    quota_row_int(&o, ",\"epoch\":", row->epoch, row->epoch == 0);

    quota_out_str(&o, ",\"limits\":[");

    /* a counter's hard and soft limits are an entry each */

    for (i = 0, n = 0; i < row->nlimits; i++) {
        quota_row_limit_entry(&o, &row->limits[i], row->limits[i].limit, 0,
                              &n);
        quota_row_limit_entry(&o, &row->limits[i], row->limits[i].soft, 1,
                              &n);
    }

    /* thresholds for the SQL side, which decides crossings (007_alerts) */

    quota_out_str(&o, "],\"alerts\":[");

    for (i = 0; i < row->nalerts; i++) {
        if (i) {
            quota_out_str(&o, ",");
        }

        quota_out_int(&o, row->alerts[i]);
    }

    quota_out_str(&o, "]}");

    return o.len;
}


/*
 * The row as COPY text.  A value is what PostgreSQL would read from the
 * row's JSON: the bytes quota_out_string() keeps, a NUL and each byte of
 * invalid UTF-8 as U+FFFD, then COPY's escapes (backslash, tab, newline,
 * carriage return); other control bytes go as they are.
 */

static void
quota_row_copy_text(quota_out_t *o, const unsigned char *s, size_t len)
{
    size_t  i, n;

    if (s == NULL) {
        quota_out_str(o, "\\N");
        return;
    }

    for (i = 0; i < len; /* void */) {

        for (n = i; n < len && s[n] >= 0x20 && s[n] < 0x80 && s[n] != '\\';
             n++)
        {
            /* void */
        }

        if (n > i) {
            quota_out_bytes(o, s + i, n - i);
            i = n;
            continue;
        }

        if (s[i] >= 0x80) {
            n = quota_utf8_len(s + i, len - i);

            if (n == 0) {
                quota_out_str(o, "\xef\xbf\xbd");
                i++;

            } else {
                quota_out_bytes(o, s + i, n);
                i += n;
            }

            continue;
        }

        switch (s[i]) {
        case '\0': quota_out_str(o, "\xef\xbf\xbd"); break;
        case '\\': quota_out_str(o, "\\\\"); break;
        case '\t': quota_out_str(o, "\\t"); break;
        case '\n': quota_out_str(o, "\\n"); break;
        case '\r': quota_out_str(o, "\\r"); break;
        default:   quota_out_bytes(o, s + i, 1);
        }

        i++;
    }
}


static void
quota_row_copy_int(quota_out_t *o, int64_t v, int null)
{
    if (null) {
        quota_out_str(o, "\\N\t");
        return;
    }

    quota_out_int(o, v);
    quota_out_str(o, "\t");
}


size_t
quota_row_copy_max(const quota_row_t *row)
{
    size_t  i, n;

    /* a byte of a string takes at most 3 here, a byte of an id 4 */

    n = quota_row_json_max(row);

    for (i = 0; i < row->nscopes; i++) {
        n += row->scopes[i].value_len;
    }

    return n;
}


size_t
quota_row_copy(char *buf, size_t size, const quota_row_t *row)
{
    size_t       i, n;
    quota_out_t  o = { buf, size, 0 };

    quota_row_copy_text(&o, row->request_id, row->request_id_len);
    quota_out_str(&o, "\t");
    quota_row_copy_int(&o, row->ts_ms, 0);
    quota_row_copy_text(&o, row->host, row->host_len);
    quota_out_str(&o, "\t");
    quota_row_copy_text(&o, row->meter, row->meter_len);

    quota_out_str(&o, "\t{");

    for (i = 0; i < row->nscopes; i++) {
        quota_out_str(&o, i ? ",\"" : "\"");
        quota_out_bytes(&o, row->scopes[i].name, row->scopes[i].name_len);
        quota_out_str(&o, "\"");
    }

    quota_out_str(&o, "}\t{");

    for (i = 0; i < row->nscopes; i++) {
        quota_out_str(&o, i ? ",\"" : "\"");
        quota_row_display(&o, row->scopes[i].value, row->scopes[i].value_len,
                          QUOTA_ROW_COPY);
        quota_out_str(&o, "\"");
    }

    quota_out_str(&o, "}\t");
    quota_out_str(&o, row->decision);
    quota_out_str(&o, "\t");

    quota_row_copy_int(&o, row->estimated, 0);
    quota_row_copy_int(&o, row->actual, 0);
    quota_row_copy_int(&o, row->upstream_status, row->upstream_status == 0);
    quota_row_copy_int(&o, row->http_status, 0);
    quota_row_copy_text(&o, row->model, row->model_len);
    quota_out_str(&o, "\t");
    quota_row_copy_int(&o, row->prompt_tokens, row->prompt_tokens < 0);
    quota_row_copy_int(&o, row->completion_tokens,
                       row->completion_tokens < 0);
    quota_row_copy_int(&o, row->cached_tokens, row->cached_tokens < 0);

    /* "limits" is JSON text with nothing COPY escapes */

    quota_out_str(&o, "[");

    for (i = 0, n = 0; i < row->nlimits; i++) {
        quota_row_limit_entry(&o, &row->limits[i], row->limits[i].limit, 0,
                              &n);
        quota_row_limit_entry(&o, &row->limits[i], row->limits[i].soft, 1,
                              &n);
    }

    quota_out_str(&o, "]\t");
    quota_row_copy_int(&o, row->epoch, row->epoch == 0);

    quota_out_str(&o, "{");

    for (i = 0; i < row->nalerts; i++) {
        if (i) {
            quota_out_str(&o, ",");
        }

        quota_out_int(&o, row->alerts[i]);
    }

    quota_out_str(&o, "}\t");

    if (row->tokens >= 0) {
        quota_out_int(&o, row->tokens);

    } else {
        quota_out_str(&o, "\\N");
    }

    quota_out_str(&o, "\n");

    return o.len;
}
