// One Anthropic call through the gate with the SDK's defaults:
// messages.create (QUOTA_MODE=create) or the messages.stream helper
// (QUOTA_MODE=stream), which adds "stream": true to the params.

import Anthropic from '@anthropic-ai/sdk';
import { env, defaultHeaders, recordingFetch, report } from './common.mjs';

const client = new Anthropic({
  apiKey: 'sk-ant-test',
  baseURL: env.baseURL,
  defaultHeaders,
  fetch: recordingFetch,
});

await report(async () => {
  if (env.mode === 'create') {
    const { data, response } = await client.messages
      .create(env.request).withResponse();
    return {
      text: data.content.map((block) => block.text).join(''),
      usage: data.usage,
      receivedMd5: response.headers.get('x-mock-body-md5'),
    };
  }

  const stream = client.messages.stream(env.request);
  const { response } = await stream.withResponse();
  const events = [];
  for await (const event of stream) events.push(event.type);
  const message = await stream.finalMessage();
  return {
    text: message.content.map((block) => block.text).join(''),
    usage: message.usage,
    events,
    receivedMd5: response.headers.get('x-mock-body-md5'),
  };
});
