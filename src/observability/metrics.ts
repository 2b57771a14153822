import { Counter, Gauge, Histogram, Registry as PromRegistry, collectDefaultMetrics } from 'prom-client';
import type { Registry } from '../registry/registry';

/** The seven business metrics of PROTOCOL.md §9, by their fixed names. */
export const BUSINESS_METRICS = [
  'users_count',
  'users_total',
  'conferences_count',
  'conferences_total',
  'duration_total',
  'recv_total',
  'sent_total',
] as const;

const MB = 1e6;

/** Every metric of the server, in one prom-client registry per server instance. */
export class Metrics {
  readonly registry = new PromRegistry();
  private readonly usersCount = new Gauge({ name: 'users_count', help: 'Connections open now', registers: [this.registry] });
  private readonly usersTotal = new Counter({ name: 'users_total', help: 'Connections accepted since start', registers: [this.registry] });
  private readonly conferencesCount = new Gauge({
    name: 'conferences_count',
    help: 'Rooms that exist now (P2P and MUC)',
    registers: [this.registry],
  });
  private readonly conferencesTotal = new Counter({
    name: 'conferences_total',
    help: 'Rooms created since start',
    registers: [this.registry],
  });
  private readonly durationTotal = new Counter({
    name: 'duration_total',
    help: 'Minutes of connection time of all closed connections',
    registers: [this.registry],
  });
  // Bytes are added up in plain numbers on every packet and handed to the counters when they are
  // read (a scrape, /stats): a prom-client inc per packet showed in the relay's profile.
  private recvBytes = 0;
  private sentBytes = 0;
  private readonly recvTotal: Counter = new Counter({
    name: 'recv_total',
    help: 'MB (10^6 bytes) of JSONgle messages received',
    registers: [this.registry],
    collect: () => {
      this.recvTotal.inc(this.recvBytes / MB);
      this.recvBytes = 0;
    },
  });
  private readonly sentTotal: Counter = new Counter({
    name: 'sent_total',
    help: 'MB (10^6 bytes) of JSONgle messages sent',
    registers: [this.registry],
    collect: () => {
      this.sentTotal.inc(this.sentBytes / MB);
      this.sentBytes = 0;
    },
  });

  /** Relays by action since the last read, handed over the same way (prom-client hashes labels on every inc). */
  private readonly relayedSinceRead = new Map<string, number>();
  private readonly relayed: Counter = new Counter({
    name: 'jsongle_messages_relayed_total',
    help: 'Messages relayed to rooms, by action',
    labelNames: ['action'],
    registers: [this.registry],
    collect: () => {
      for (const [action, count] of this.relayedSinceRead) this.relayed.inc({ action }, count);
      this.relayedSinceRead.clear();
    },
  });
  private readonly errors = new Counter({
    name: 'jsongle_errors_total',
    help: 'Errors sent to clients, by code',
    labelNames: ['code'],
    registers: [this.registry],
  });
  private readonly refused = new Counter({
    name: 'jsongle_connections_refused_total',
    help: 'Connections refused, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  private readonly callDuration = new Histogram({
    name: 'jsongle_call_duration_seconds',
    help: 'Durations of finished calls, as reported by clients with session-metrics',
    buckets: [10, 30, 60, 300, 900, 1800, 3600, 7200],
    registers: [this.registry],
  });
  private readonly callsFailed = new Counter({
    name: 'jsongle_calls_failed_total',
    help: 'Calls reported failed by clients (ICE failure)',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Room metrics follow the registry's events; `isInternal` hides the self-check's rooms. */
  observe(registry: Registry, isInternal: (rid: string) => boolean): void {
    registry.on('room-created', ({ rid }) => {
      if (isInternal(rid)) return;
      this.conferencesTotal.inc();
      this.conferencesCount.inc();
    });
    registry.on('room-deleted', ({ rid }) => {
      if (!isInternal(rid)) this.conferencesCount.dec();
    });
  }

  connectionOpened(): void {
    this.usersCount.inc();
    this.usersTotal.inc();
  }

  connectionClosed(openedAtMs: number): void {
    this.usersCount.dec();
    this.durationTotal.inc((Date.now() - openedAtMs) / 60_000);
  }

  connectionRefused(reason: string): void {
    this.refused.inc({ reason });
  }

  received(bytes: number): void {
    this.recvBytes += bytes;
  }

  sent(bytes: number): void {
    this.sentBytes += bytes;
  }

  relayedMessage(action: string): void {
    this.relayedSinceRead.set(action, (this.relayedSinceRead.get(action) ?? 0) + 1);
  }

  errorSent(code: number): void {
    this.errors.inc({ code: String(code) });
  }

  callReported(durationSeconds: number | undefined, error: string | undefined): void {
    if (durationSeconds !== undefined) this.callDuration.observe(durationSeconds);
    if (error === 'ice-failed') this.callsFailed.inc();
  }

  /** The business metrics as numbers, for GET /stats. */
  async stats(): Promise<Record<(typeof BUSINESS_METRICS)[number], number>> {
    const entries = await Promise.all(
      BUSINESS_METRICS.map(async (name) => {
        const metric = await this.registry.getSingleMetric(name)?.get();
        return [name, metric?.values[0]?.value ?? 0] as const;
      }),
    );
    return Object.fromEntries(entries) as Record<(typeof BUSINESS_METRICS)[number], number>;
  }
}
