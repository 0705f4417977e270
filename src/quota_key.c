/*
 * Redis key building: percent-encoding of scope values and the key
 * layout described in quota_key.h.
 */

#include <string.h>

#include "quota_key.h"


static const char  quota_key_hex[] = "0123456789ABCDEF";


static int
quota_key_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
           || c == '~' || c == '@';
}


size_t
quota_key_escaped_len(const unsigned char *value, size_t len)
{
    size_t  i, n;

    n = len;

    for (i = 0; i < len; i++) {
        if (!quota_key_plain(value[i])) {
            n += 2;
        }
    }

    return n;
}


unsigned char *
quota_key_escape(unsigned char *dst, const unsigned char *value, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (quota_key_plain(value[i])) {
            *dst++ = value[i];
            continue;
        }

        *dst++ = '%';
        *dst++ = quota_key_hex[value[i] >> 4];
        *dst++ = quota_key_hex[value[i] & 0xf];
    }

    return dst;
}


size_t
quota_key_path_elt_len(size_t depth, size_t name_len,
    const unsigned char *value, size_t value_len)
{
    return (depth == 0 ? 2 : 1) + name_len + 1
           + quota_key_escaped_len(value, value_len);
}


unsigned char *
quota_key_path_elt(unsigned char *dst, size_t depth,
    const unsigned char *name, size_t name_len,
    const unsigned char *value, size_t value_len)
{
    *dst++ = depth == 0 ? '{' : '/';

    memcpy(dst, name, name_len);
    dst += name_len;
    *dst++ = '=';

    dst = quota_key_escape(dst, value, value_len);

    if (depth == 0) {
        *dst++ = '}';
    }

    return dst;
}


size_t
quota_key_tail_len(size_t meter_len)
{
    return quota_key_counter_tail_len(meter_len, 0);
}


unsigned char *
quota_key_tail(unsigned char *dst, const unsigned char *meter,
    size_t meter_len, quota_period_e period, int64_t window_start)
{
    char  label[QUOTA_PERIOD_LABEL_MAX];

    return quota_key_counter_tail(dst, meter, meter_len, period,
                                  QUOTA_UNIT_USD, NULL, 0, label,
                                  quota_period_label(period, window_start,
                                                     label));
}


size_t
quota_key_counter_tail_len(size_t meter_len, size_t zone_len)
{
    return 1 + meter_len + 1 + sizeof("minute.req") - 1 + 1 + zone_len + 1
           + QUOTA_PERIOD_LABEL_MAX;
}


unsigned char *
quota_key_counter_tail(unsigned char *dst, const unsigned char *meter,
    size_t meter_len, quota_period_e period, quota_unit_e unit,
    const char *zone, size_t zone_len, const char *label, size_t label_len)
{
    const char  *name;
    size_t       len;

    *dst++ = ':';
    memcpy(dst, meter, meter_len);
    dst += meter_len;
    *dst++ = ':';

    name = quota_period_name(period);
    len = strlen(name);
    memcpy(dst, name, len);
    dst += len;

    /* usd and UTC keep the names counters had before units and zones */

    if (unit != QUOTA_UNIT_USD) {
        *dst++ = '.';
        name = quota_unit_name(unit);
        len = strlen(name);
        memcpy(dst, name, len);
        dst += len;
    }

    if (zone_len) {
        *dst++ = '@';
        memcpy(dst, zone, zone_len);
        dst += zone_len;
    }

    *dst++ = ':';
    memcpy(dst, label, label_len);

    return dst + label_len;
}


int
quota_key_name_valid(const unsigned char *name, size_t len)
{
    size_t  i;

    if (len == 0 || len > 64) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!((name[i] >= 'a' && name[i] <= 'z')
              || (name[i] >= 'A' && name[i] <= 'Z')
              || (name[i] >= '0' && name[i] <= '9')
              || name[i] == '_' || name[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}
