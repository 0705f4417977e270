/*
 * libFuzzer target for src/quota_request.c: any bytes as a request body.
 *
 * Beyond "no crash, no leak, no undefined behaviour" under ASan and
 * UBSan, it checks what the contract promises: a refused body leaves req
 * zeroed with max_output -1; a read one has a model shorter than
 * QUOTA_MODEL_MAX, an output bound of -1 or 1..QUOTA_REQUEST_MAX_OUTPUT
 * and a non-negative input estimate; the insertion point is just after
 * a "{", is found for every streaming Chat Completions body without
 * stream_options (and for no other), and the body with the member
 * inserted there reads back the same, still Chat Completions, now with
 * include_usage (its input estimate may grow by the member's size: a
 * tool nested too deep to measure counts as the whole body).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quota_request.h"


static const char  quota_fuzz_member[] =
    "\"stream_options\":{\"include_usage\":true},";


static void
quota_fuzz_inserted(const uint8_t *data, size_t size, size_t at,
    const quota_request_t *req)
{
    size_t           n, m;
    uint8_t         *b;
    quota_request_t  r;

    m = sizeof(quota_fuzz_member) - 1;
    n = size + m;

    b = malloc(n);
    if (b == NULL) {
        return;
    }

    memcpy(b, data, at);
    memcpy(b + at, quota_fuzz_member, m);
    memcpy(b + at + m, data + at, size - at);

    if (quota_request_parse(b, n, &r) != 0
        || !r.stream || !r.stream_options || !r.include_usage
        || r.model_len != req->model_len
        || memcmp(r.model, req->model, r.model_len) != 0
        || r.max_output != req->max_output
        || r.api != QUOTA_API_CHAT
        || r.input_tokens < req->input_tokens
        || r.input_tokens > req->input_tokens + (int64_t) (m + 2) / 3
        || quota_request_usage_insert_at(b, n, &r) != -1)
    {
        abort();
    }

    free(b);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long             at;
    quota_request_t  req, zero;

    if (quota_request_parse(data, size, &req) != 0) {
        memset(&zero, 0, sizeof(zero));
        zero.max_output = -1;

        if (memcmp(&req, &zero, sizeof(zero)) != 0
            || quota_request_usage_insert_at(data, size, &req) != -1)
        {
            abort();
        }

        return 0;
    }

    if (req.model_len >= QUOTA_MODEL_MAX
        || req.max_output == 0 || req.max_output < -1
        || req.max_output > QUOTA_REQUEST_MAX_OUTPUT
        || req.input_tokens < 0)
    {
        abort();
    }

    at = quota_request_usage_insert_at(data, size, &req);

    if (!req.stream || req.stream_options || req.api != QUOTA_API_CHAT) {
        if (at != -1) {
            abort();
        }

        return 0;
    }

    if (at < 1 || (size_t) at > size || data[at - 1] != '{') {
        abort();
    }

    quota_fuzz_inserted(data, size, (size_t) at, &req);

    return 0;
}
