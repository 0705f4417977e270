/*
 * RateLimit headers.  A scope name is an operator's word from the config,
 * yet it is written as an sf-string, which allows only printable ASCII:
 * anything else becomes '?' so that a header never fails to parse.
 */

#include "quota_json.h"
#include "quota_ratelimit.h"


static void
quota_rl_int(quota_out_t *o, int64_t v)
{
    if (v < 0) {
        v = 0;
    }

    quota_out_int(o, v > QUOTA_RL_INT_MAX ? QUOTA_RL_INT_MAX : v);
}


static void
quota_rl_name(quota_out_t *o, const quota_rl_item_t *it)
{
    size_t         i, run;
    unsigned char  c;
    char           esc[2];

    quota_out_bytes(o, "\"", 1);

    /* plain bytes go out in runs: a scope name is nearly always all plain */

    for (i = 0, run = 0; i < it->scope_len; i++) {
        c = it->scope[i];

        if (c != '"' && c != '\\' && c >= 0x20 && c <= 0x7e) {
            continue;
        }

        quota_out_bytes(o, it->scope + run, i - run);
        run = i + 1;

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char) c;
            quota_out_bytes(o, esc, 2);

        } else {
            quota_out_bytes(o, "?", 1);
        }
    }

    quota_out_bytes(o, it->scope + run, i - run);

    quota_out_bytes(o, "-", 1);
    quota_out_str(o, quota_period_name(it->period));

    if (it->unit != QUOTA_UNIT_USD) {
        quota_out_bytes(o, "-", 1);
        quota_out_str(o, quota_unit_name(it->unit));
    }

    quota_out_bytes(o, "\"", 1);
}


size_t
quota_rl_policy(char *buf, size_t size, const quota_rl_item_t *items,
    size_t n)
{
    size_t       i;
    quota_out_t  o = { buf, size, 0 };

    for (i = 0; i < n; i++) {
        if (i) {
            quota_out_bytes(&o, ", ", 2);
        }

        quota_rl_name(&o, &items[i]);
        quota_out_str(&o, ";q=");
        quota_rl_int(&o, items[i].quota);
        quota_out_str(&o, ";w=");
        quota_rl_int(&o, items[i].window);
    }

    return o.len;
}


int
quota_rl_fewer_left(int64_t remaining_a, int64_t cost_a, int64_t remaining_b,
    int64_t cost_b)
{
    __int128  l, r;

    l = (__int128) (remaining_a > 0 ? remaining_a : 0)
        * (cost_b > 0 ? cost_b : 1);
    r = (__int128) (remaining_b > 0 ? remaining_b : 0)
        * (cost_a > 0 ? cost_a : 1);

    return l < r ? -1 : l > r;
}


size_t
quota_rl_least(const quota_rl_item_t *items, size_t n)
{
    int     c;
    size_t  i, least;

    least = 0;

    for (i = 1; i < n; i++) {
        c = quota_rl_fewer_left(items[i].remaining, items[i].cost,
                                items[least].remaining, items[least].cost);

        /* of two limits with as little left, the later reset binds */
        if (c < 0 || (c == 0 && items[i].reset > items[least].reset)) {
            least = i;
        }
    }

    return least;
}


size_t
quota_rl_state(char *buf, size_t size, const quota_rl_item_t *items,
    size_t n)
{
    quota_out_t             o = { buf, size, 0 };
    const quota_rl_item_t  *it;

    it = &items[quota_rl_least(items, n)];

    quota_rl_name(&o, it);
    quota_out_str(&o, ";r=");
    quota_rl_int(&o, it->remaining);
    quota_out_str(&o, ";t=");
    quota_rl_int(&o, it->reset);

    return o.len;
}
