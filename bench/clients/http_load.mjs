// A closed-loop HTTP load client: `concurrency` keep-alive connections, each sending the same
// request again as soon as the previous answer is read, for `seconds` after `warmup` seconds.
//
//   node http_load.mjs '{"url": "http://127.0.0.1:PORT/auth/channel", "method": "POST",
//                        "headers": {...}, "body": "socket_id=1.2&channel_name=private-x",
//                        "concurrency": 16, "seconds": 5, "warmup": 1}'
//
// Prints one JSON line: {"type": "done", "count", "errors", "seconds", "hist", "cpu"}; an answer
// other than 200 counts as an error (and its latency is not recorded).
import http from 'node:http';
import { Histogram, cpuSeconds, nowMs } from './histogram.mjs';

const options = JSON.parse(process.argv[2]);
const concurrency = Math.max(1, options.concurrency ?? 16);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
const url = new URL(options.url);
const body = options.body ?? '';
const headers = { ...(options.headers ?? {}), 'content-length': Buffer.byteLength(body) };

function send() {
  return new Promise((resolve) => {
    const request = http.request(
      { hostname: url.hostname, port: url.port, path: url.pathname + url.search, method: options.method ?? 'GET', headers, agent },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode === 200));
      },
    );
    request.on('error', () => resolve(false));
    request.end(body);
  });
}

async function main() {
  const hist = new Histogram();
  let count = 0;
  let errors = 0;
  const start = nowMs();
  const warmupEnd = start + (options.warmup ?? 1) * 1000;
  const end = warmupEnd + options.seconds * 1000;
  let measuredFrom = 0;
  let cpuFrom = 0;
  const worker = async () => {
    for (;;) {
      const sent = nowMs();
      if (sent >= end) return;
      const counted = sent >= warmupEnd; // requests sent during the warm-up are not counted
      if (counted && measuredFrom === 0) {
        measuredFrom = sent;
        cpuFrom = cpuSeconds();
      }
      const ok = await send();
      if (!counted) continue;
      if (ok) {
        count += 1;
        hist.add(nowMs() - sent);
      } else {
        errors += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (nowMs() - measuredFrom) / 1000;
  const result = { type: 'done', count, errors, seconds, hist: hist.toJSON(), cpu: cpuSeconds() - cpuFrom };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  agent.destroy();
}

main().catch((error) => {
  process.stdout.write(`${JSON.stringify({ type: 'error', error: String(error?.message ?? error) })}\n`);
  process.exit(1);
});
