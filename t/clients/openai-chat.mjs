// One chat.completions.create call through the gate, as an application
// makes it: the SDK's defaults (maxRetries 2, its own backoff, its Accept
// header), a stream read chunk by chunk the usual way.

import OpenAI from 'openai';
import { env, defaultHeaders, recordingFetch, report } from './common.mjs';

const client = new OpenAI({
  apiKey: 'sk-test',
  baseURL: env.baseURL,
  defaultHeaders,
  fetch: recordingFetch,
});

// the chunks read so far, reported also when the loop throws
const seen = { chunks: [] };

await report(async () => {
  if (!env.request.stream) {
    const { data, response } = await client.chat.completions
      .create(env.request).withResponse();
    return {
      content: data.choices[0].message.content,
      usage: data.usage,
      receivedMd5: response.headers.get('x-mock-body-md5'),
    };
  }

  const { data: stream, response } = await client.chat.completions
    .create(env.request).withResponse();
  let text = '';
  for await (const chunk of stream) {
    seen.chunks.push(chunk);
    // what applications write: a chunk without choices throws TypeError
    text += chunk.choices[0].delta.content ?? '';
  }
  return { text, receivedMd5: response.headers.get('x-mock-body-md5') };
}, seen);
