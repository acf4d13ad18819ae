// Latencies in log-spaced buckets, so that several processes can merge them and nothing grows with
// the number of samples. Bucket 0 holds samples <= LOW_MS; bucket k > 0 holds samples in
// (LOW_MS * GROWTH^(k-1), LOW_MS * GROWTH^k]: a percentile read back is within 2% of the sample.
// bench/plots.py (Histogram) reads the same layout; keep the constants equal.
export const LOW_MS = 0.01;
export const GROWTH = 1.02;
export const BUCKETS = 1200;

const LOG_GROWTH = Math.log(GROWTH);

export class Histogram {
  constructor() {
    this.counts = new Float64Array(BUCKETS);
    this.total = 0;
  }

  add(ms) {
    let k = 0;
    if (ms > LOW_MS) k = Math.min(BUCKETS - 1, Math.ceil(Math.log(ms / LOW_MS) / LOG_GROWTH));
    this.counts[k] += 1;
    this.total += 1;
  }

  // Sparse [bucket, count] pairs: what the Python side reads.
  toJSON() {
    const pairs = [];
    for (let k = 0; k < BUCKETS; k += 1) if (this.counts[k]) pairs.push([k, this.counts[k]]);
    return pairs;
  }
}

// Wall-clock milliseconds with sub-millisecond resolution, comparable across processes on one
// machine (performance.timeOrigin is taken from the realtime clock when the process starts).
export function nowMs() {
  return performance.timeOrigin + performance.now();
}

// Seconds of CPU this process used so far (user + system).
export function cpuSeconds() {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}
