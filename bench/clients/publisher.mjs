// Publishes events through the Pusher HTTP API (POST /apps/{id}/events, signed as Pusher's SDKs
// sign), which soketi and the relay's local provider both serve: one publisher for both.
//
//   node publisher.mjs '{"base": "http://127.0.0.1:PORT", "appId": "1", "key": "k", "secret": "s",
//                        "channel": "bench", "messages": 200, "rate": 0, "concurrency": 1}'
//
// rate 0 publishes back to back (`concurrency` requests in flight); rate > 0 publishes on a fixed
// schedule of `rate` events per second. Each event's data is this process's clock in ms, as a
// string, so a subscriber measures the end-to-end latency on receipt. Prints one JSON line:
//   {"type": "done", "sent", "errors", "first", "last", "cpu"}
import crypto from 'node:crypto';
import http from 'node:http';
import { cpuSeconds, nowMs } from './histogram.mjs';

const options = JSON.parse(process.argv[2]);
const rate = options.rate ?? 0;
// On a schedule, a few requests may be in flight so that one slow answer does not delay the next.
const workers = Math.max(rate > 0 ? 4 : 1, options.concurrency ?? 1);
const agent = new http.Agent({ keepAlive: true, maxSockets: workers });
const path = `/apps/${options.appId}/events`;

function signedUrl(body) {
  const params = {
    auth_key: options.key,
    auth_timestamp: String(Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    body_md5: crypto.createHash('md5').update(body).digest('hex'),
  };
  const query = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&');
  const signature = crypto.createHmac('sha256', options.secret).update(`POST\n${path}\n${query}`).digest('hex');
  return `${options.base}${path}?${query}&auth_signature=${signature}`;
}

function publish() {
  const body = JSON.stringify({ name: 'tick', channel: options.channel, data: nowMs().toFixed(3) });
  return new Promise((resolve) => {
    const request = http.request(
      signedUrl(body),
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode === 200));
      },
    );
    request.on('error', () => resolve(false));
    request.end(body);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const total = options.messages;
  const result = { type: 'done', sent: 0, errors: 0, first: nowMs(), last: 0 };
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const index = next;
      next += 1;
      if (rate > 0) {
        const due = result.first + (index * 1000) / rate;
        const wait = due - nowMs();
        if (wait > 0) await sleep(wait);
      }
      if (await publish()) result.sent += 1;
      else result.errors += 1;
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  result.last = nowMs();
  result.cpu = cpuSeconds();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  agent.destroy();
}

main().catch((error) => {
  process.stdout.write(`${JSON.stringify({ type: 'error', error: String(error?.message ?? error) })}\n`);
  process.exit(1);
});
