/**
 * A log-bucketed latency histogram: 2 % wide buckets from 1 µs to about an hour, so that the
 * generator processes can merge theirs exactly and the percentiles are within 2 % of the truth.
 */
const GROWTH = 1.02;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = 1200;

export interface HistogramJson {
  counts: Record<string, number>;
  count: number;
  maxNs: number;
}

export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  count = 0;
  maxNs = 0;

  record(ns: number): void {
    const us = ns / 1000;
    const index = us <= 1 ? 0 : Math.min(BUCKETS - 1, Math.ceil(Math.log(us) / LOG_GROWTH));
    this.counts[index] = (this.counts[index] ?? 0) + 1;
    this.count++;
    if (ns > this.maxNs) this.maxNs = ns;
  }

  merge(other: LatencyHistogram | HistogramJson): this {
    const counts = other instanceof LatencyHistogram ? other.toJSON().counts : other.counts;
    for (const [index, n] of Object.entries(counts)) {
      const i = Number(index);
      this.counts[i] = (this.counts[i] ?? 0) + n;
    }
    this.count += other.count;
    this.maxNs = Math.max(this.maxNs, other.maxNs);
    return this;
  }

  /** The upper bound of the bucket holding quantile `q` (0–1), in milliseconds; NaN when empty. */
  quantileMs(q: number): number {
    if (this.count === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i] ?? 0;
      if (seen >= rank) return Math.min(GROWTH ** i / 1000, this.maxNs / 1e6);
    }
    return this.maxNs / 1e6;
  }

  /** Sparse: only the buckets in use, to keep IPC messages small. */
  toJSON(): HistogramJson {
    const counts: Record<string, number> = {};
    this.counts.forEach((n, i) => {
      if (n > 0) counts[i] = n;
    });
    return { counts, count: this.count, maxNs: this.maxNs };
  }

  static from(json: HistogramJson): LatencyHistogram {
    return new LatencyHistogram().merge(json);
  }
}
