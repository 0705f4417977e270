// A minute budget spent, then a call the SDK retries by itself after the
// gate's Retry-After and that succeeds in the next minute.  The first call
// spends the whole budget and the second is refused in the same minute, so
// both start between :50 and :56 of a minute: the reset is then at most
// 10 s away (plus the gate's spread of up to 5 s), well under the 60 s
// past which the gate says not to retry.

import OpenAI from 'openai';
import { env, defaultHeaders, recordingFetch, report, sleep } from './common.mjs';

const client = new OpenAI({
  apiKey: 'sk-test',
  baseURL: env.baseURL,
  defaultHeaders,
  fetch: recordingFetch,
});

for (;;) {
  const second = new Date().getUTCSeconds();
  if (second >= 50 && second < 56) break;
  await sleep(200);
}

await report(async () => {
  const first = await client.chat.completions.create(env.request);
  const start = Date.now();
  const second = await client.chat.completions.create(env.request);
  return {
    firstUsage: first.usage,
    secondUsage: second.usage,
    secondStart: start,
    secondMs: Date.now() - start,
  };
});
