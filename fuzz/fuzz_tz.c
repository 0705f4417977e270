/*
 * libFuzzer target for src/quota_tz.c: any bytes as a TZif file.
 *
 * Beyond "no crash, no undefined behaviour" under ASan and UBSan (the
 * reader must never read past the buffer it is given), a zone it accepts
 * must behave as a zone: offsets within a day of UTC, and windows that
 * contain the instant asked about and run forward.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quota_tz.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t      t, start, end;
    int32_t      off;
    unsigned     i;
    quota_tz_t  *tz;
    char         err[256];

    static const quota_period_e  periods[] = {
        QUOTA_PERIOD_DAY, QUOTA_PERIOD_WEEK, QUOTA_PERIOD_MONTH
    };

    tz = malloc(sizeof(quota_tz_t));
    if (tz == NULL) {
        return 0;
    }

    if (quota_tz_parse(data, size, tz, err, sizeof(err)) != 0) {
        if (memchr(err, '\0', sizeof(err)) == NULL) {
            abort();
        }

        free(tz);
        return 0;
    }

    for (t = -2000000000LL; t < 4200000000LL; t += 123456789LL) {
        off = quota_tz_offset(tz, t);

        if (off < -86400 || off > 86400) {
            abort();
        }

        for (i = 0; i < sizeof(periods) / sizeof(periods[0]); i++) {
            if (quota_tz_window(tz, periods[i], t, &start, &end) == 0
                && !(start <= t && t < end))
            {
                abort();
            }
        }
    }

    free(tz);

    return 0;
}
