/*
 * A ledger row, the JSON object of docs/ledger-contract.md as a spool of
 * an older nginx keeps it, turned into one line of PostgreSQL's COPY text
 * format in the columns of pg_temp.quota_ingest
 * (migrations/014_ledger_ingest.sql), so that the server parses no JSON
 * but the small "limits".  A field the row lacks is NULL and a key the
 * columns do not name is skipped, as jsonb_to_recordset() reads them;
 * a row this cannot read the same way (a value of another JSON type than
 * its column's, \u0000, a key with an escape) is left to the JSON path.
 * Pure C, no nginx.
 */

#ifndef QUOTA_COPY_H
#define QUOTA_COPY_H

#include <stddef.h>


/* the columns of pg_temp.quota_ingest, in order */
#define QUOTA_COPY_COLUMNS  19

typedef enum {
    QUOTA_COPY_TEXT = 0,
    QUOTA_COPY_INTEGER,          /* bigint, integer */
    QUOTA_COPY_ARRAY,            /* text[] or integer[] */
    QUOTA_COPY_JSON              /* jsonb */
} quota_copy_kind_e;

typedef struct {
    const char          *name;   /* the row's JSON key */
    size_t               len;
    quota_copy_kind_e    kind;
} quota_copy_column_t;

extern const quota_copy_column_t  quota_copy_columns[QUOTA_COPY_COLUMNS];


/* a line never takes more than this for a row of len bytes */
#define quota_copy_max(len)  (2 * (len) + 4 * QUOTA_COPY_COLUMNS + 8)

/*
 * writes the row's line, '\n' included, at dst (quota_copy_max(len)
 * bytes); returns its length, or 0 when the row is to go as JSON
 */
size_t quota_copy_row(unsigned char *dst, const unsigned char *json,
    size_t len);

/*
 * A queued or spooled row: its COPY line alone (quota_row_copy(), what
 * nginx queues), its JSON alone (a spool of an older nginx), or its JSON,
 * a newline and its line.  Returns the JSON's length, 0 for none;
 * *line and *line_len give the line, or NULL and 0 for a row of JSON
 * alone, whose line quota_copy_row() makes.  A line never starts with
 * '{', nor does JSON hold a newline.
 */
size_t quota_copy_split(const unsigned char *row, size_t len,
    const unsigned char **line, size_t *line_len);

/*
 * the row's JSON from its line (quota_copy_json.c), snprintf-like: what
 * the JSON path and the file of refused rows take; quota_copy_row() of
 * it is the line again
 */
size_t quota_copy_json(char *buf, size_t size, const unsigned char *line,
    size_t len);

/* a size quota_copy_json() never exceeds for a line of len bytes */
#define quota_copy_json_max(len)  (6 * (len) + 24 * QUOTA_COPY_COLUMNS + 8)

#endif /* QUOTA_COPY_H */
