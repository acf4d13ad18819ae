// What a subscriber process received, and the JSON-lines commands it takes on stdin: shared by the
// WebSocket subscribers (subscribers.mjs) and the server-sent-events ones (sse.mjs).
//   {"op": "report"}  -> {"type": "report", "count", "first", "last", "hist", "closed", "cpu"}
//   {"op": "reset"}   -> clears the counters and the histogram
//   {"op": "close"}   -> closes every connection and exits
import readline from 'node:readline';
import { Histogram, cpuSeconds, nowMs } from './histogram.mjs';

export function emit(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

// Events received (each one's latency from the publisher's clock) and connections lost once ready.
export class Received {
  constructor() {
    this.closed = 0;
    this.reset();
  }

  // `sent`: the publisher's clock in the event's data; false when it is not a number.
  record(sent) {
    if (Number.isNaN(sent)) return false;
    const now = nowMs();
    if (this.count === 0) this.first = now;
    this.count += 1;
    this.last = now;
    this.hist.add(now - sent);
    return true;
  }

  reset() {
    this.count = 0;
    this.first = 0;
    this.last = 0;
    this.hist = new Histogram();
  }

  report() {
    return {
      type: 'report',
      count: this.count,
      first: this.first,
      last: this.last,
      hist: this.hist.toJSON(),
      closed: this.closed,
      cpu: cpuSeconds(),
    };
  }
}

// Open `options.connections` connections with `open(index)`, `options.concurrency` at a time;
// resolves with the milliseconds it took.
export async function openEach(options, open) {
  const started = nowMs();
  let next = 0;
  const worker = async () => {
    while (next < options.connections) {
      const index = next;
      next += 1;
      await open(index);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 50) }, worker));
  return nowMs() - started;
}

// Take commands once `opening` (every connection made) settles; a failure to open is reported as
// {"type": "error"} and ends the process.
export function serve(received, closeAll, opening) {
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const command = JSON.parse(line);
    if (command.op === 'report') emit(received.report());
    else if (command.op === 'reset') received.reset();
    else if (command.op === 'close') closeAll();
  }).on('close', () => process.exit(0));
  opening.catch((error) => {
    emit({ type: 'error', error: String(error?.message ?? error) });
    process.exit(1);
  });
}
