/*
 * tzwindow ZONE PERIOD [UNIX_SECONDS...]: the local window of each
 * instant as nginx computes it (quota_tz_window()), one line each,
 * "instant start end"; instants come from the arguments, else from
 * stdin, one a line.  t/22-schema-units-zones.t compares these with
 * quota.window_start/window_end in PostgreSQL.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quota_period.h"
#include "quota_tz.h"


static int
tzwindow_one(const quota_tz_t *tz, quota_period_e p, const char *arg)
{
    char     *end;
    int64_t   t, s, e;

    t = (int64_t) strtoll(arg, &end, 10);

    if (end == arg || (*end != '\0' && *end != '\n')) {
        fprintf(stderr, "tzwindow: bad instant \"%s\"\n", arg);
        return -1;
    }

    if (quota_tz_window(tz, p, t, &s, &e) != 0) {
        fprintf(stderr, "tzwindow: no local window for this period\n");
        return -1;
    }

    printf("%" PRId64 " %" PRId64 " %" PRId64 "\n", t, s, e);

    return 0;
}


int
main(int argc, char **argv)
{
    static quota_tz_t  tz;
    char               err[256], line[64];
    int                p, i;

    if (argc < 3) {
        fprintf(stderr, "usage: tzwindow ZONE day|week|month [SECONDS...]\n");
        return 2;
    }

    p = quota_period_parse(argv[2], strlen(argv[2]));

    if (p < 0) {
        fprintf(stderr, "tzwindow: unknown period \"%s\"\n", argv[2]);
        return 2;
    }

    if (quota_tz_load(argv[1], &tz, err, sizeof(err)) != 0) {
        fprintf(stderr, "tzwindow: %s\n", err);
        return 1;
    }

    if (argc > 3) {
        for (i = 3; i < argc; i++) {
            if (tzwindow_one(&tz, (quota_period_e) p, argv[i]) != 0) {
                return 1;
            }
        }

        return 0;
    }

    while (fgets(line, sizeof(line), stdin) != NULL) {
        if (tzwindow_one(&tz, (quota_period_e) p, line) != 0) {
            return 1;
        }
    }

    return 0;
}
