// What the client scripts share: the gate's address and the request from
// the environment t/050-sdk.t sets, a fetch that records every attempt the
// SDK makes (its retries are invisible otherwise), and the one JSON line
// each script prints for the test to read.
//
//   QUOTA_BASE_URL  the SDK's baseURL
//   QUOTA_TENANT    sent as X-Tenant-Id with every request
//   QUOTA_REQUEST   JSON: the params of the SDK call
//   QUOTA_HEADERS   JSON: more default headers (X-Mock-* for the upstream)
//   QUOTA_MODE      create or stream, where a script has both

import { createHash } from 'node:crypto';

// A script ends with the test that started it, also when that was killed
// outright: an SDK told to wait for hours would outlive it otherwise.
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) process.exit(1); }, 500).unref();

export const env = {
  baseURL: process.env.QUOTA_BASE_URL,
  tenant: process.env.QUOTA_TENANT,
  request: JSON.parse(process.env.QUOTA_REQUEST || '{}'),
  headers: JSON.parse(process.env.QUOTA_HEADERS || '{}'),
  mode: process.env.QUOTA_MODE || 'create',
};

export const defaultHeaders = { 'X-Tenant-Id': env.tenant, ...env.headers };

export const md5 = (text) => createHash('md5').update(text).digest('hex');

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Each HTTP attempt as the SDK sent it and as the gate answered it.  The
// body's digest is of the exact bytes sent, to compare with the digest
// the upstream reports of what it received.
export const attempts = [];

export async function recordingFetch(url, init = {}) {
  const attempt = {
    start: Date.now(),
    url: String(url),
    accept: new Headers(init.headers).get('accept'),
    bodyMd5: typeof init.body === 'string' ? md5(init.body) : null,
  };
  attempts.push(attempt);
  const res = await fetch(url, init);
  attempt.status = res.status;
  attempt.retryAfter = res.headers.get('retry-after');
  attempt.shouldRetry = res.headers.get('x-should-retry');
  return res;
}

// What an application can read from what the SDK threw: the class, the
// properties the gate's envelope is meant to fill, and every own property,
// so that a property the SDK renamed shows up in the test's diagnostics.
export function describeError(err) {
  return {
    class: err?.constructor?.name,
    name: err?.name,
    props: err ? Object.getOwnPropertyNames(err).sort() : [],
    status: err?.status,
    code: err?.code,
    type: err?.type,
    param: err?.param,
    message: err?.message,
    error: err?.error,
    details: err?.details,
    retryAfter: err?.headers?.get?.('retry-after') ?? null,
    shouldRetry: err?.headers?.get?.('x-should-retry') ?? null,
  };
}

// Runs the call and prints { ok, ...its result } or { ok: false, error },
// with the time it took and the attempts behind it; `seen` is what the
// call gathered on its way, printed also when it failed half-way.
export async function report(call, seen = {}) {
  const start = Date.now();
  let out;
  try {
    const result = await call();
    out = { ok: true, ...seen, ...result };
  } catch (err) {
    out = { ok: false, ...seen, error: describeError(err) };
  }
  out.elapsedMs = Date.now() - start;
  out.attempts = attempts;
  process.stdout.write(JSON.stringify(out) + '\n');
}
