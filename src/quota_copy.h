/*
 * A ledger row, the JSON object of docs/ledger-contract.md as the queue
 * and the spool keep it, turned into one line of PostgreSQL's COPY text
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


/* a line never takes more than this for a row of len bytes */
#define quota_copy_max(len)  (2 * (len) + 4 * QUOTA_COPY_COLUMNS + 8)

/*
 * writes the row's line, '\n' included, at dst (quota_copy_max(len)
 * bytes); returns its length, or 0 when the row is to go as JSON
 */
size_t quota_copy_row(unsigned char *dst, const unsigned char *json,
    size_t len);

/*
 * A queued or spooled row: its JSON, and, when nginx wrote both, a
 * newline and its COPY line (quota_row_copy(); JSON holds no newline).
 * Returns the JSON's length; *line and *line_len give the line, or NULL
 * and 0 for a row of JSON alone, whose line quota_copy_row() makes.
 */
size_t quota_copy_split(const unsigned char *row, size_t len,
    const unsigned char **line, size_t *line_len);

#endif /* QUOTA_COPY_H */
