import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import type { Config } from '../config';
import type { Logger } from '../observability/logger';
import { RedisRegistry } from './redis-registry';

export interface SharedState {
  registry: RedisRegistry;
  /** The Socket.IO adapter that carries emits to sockets of other processes. */
  adapter: ReturnType<typeof createAdapter>;
  /** Resolves once the adapter's subscription is in place (call after the Socket.IO server exists). */
  subscribed(): Promise<void>;
  close(): Promise<void>;
}

const STARTUP_WAIT_MS = 5000;

/**
 * Connects to Redis for the registry and the Socket.IO adapter. ioredis, not the `redis` client:
 * ioredis restores its subscriptions after a reconnect (node-redis #2155), without which
 * cross-process delivery would silently stop after a Redis restart.
 */
export async function connectRedis(config: Pick<Config, 'redisUrl' | 'nodeHeartbeatMs'>, logger: Logger): Promise<SharedState> {
  const log = logger.child({ module: 'redis' });
  const options = {
    // Registry calls fail at once while Redis is down (the client gets 503002) instead of
    // queueing without bound and answering minutes late.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 2000,
    retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000),
  };
  // Auto-pipelining: the commands of one tick (a relay's room read, its buffer check) go out in
  // one write, which matters when every relayed message crosses Redis.
  const registryClient = new Redis(config.redisUrl, { ...options, enableAutoPipelining: true });
  // Publishing may queue through a short reconnect: the adapter does not catch publish errors.
  const pubClient = new Redis(config.redisUrl, { ...options, enableOfflineQueue: true });
  // No ready check on the subscriber: when Redis is slow to answer, ioredis would send its INFO
  // after the adapter's PSUBSCRIBE, fail it ("subscriber mode"), reconnect, and come back without
  // the subscription: delivery from the other processes would silently never happen.
  const subClient = new Redis(config.redisUrl, { ...options, enableOfflineQueue: true, enableReadyCheck: false });
  const clients = [registryClient, pubClient, subClient];
  let warned = false;
  for (const client of clients) {
    client.on('error', (error: Error) => {
      // One line per outage, not one per retry.
      if (!warned) log.error('redis unreachable', { error: error.message });
      warned = true;
    });
    client.on('ready', () => {
      if (warned) log.warn('redis reachable again');
      warned = false;
    });
  }
  await Promise.race([
    Promise.all(clients.map((client) => once(client, 'ready'))),
    new Promise((resolve) => setTimeout(resolve, STARTUP_WAIT_MS).unref()),
  ]);
  if (registryClient.status !== 'ready')
    log.error('redis not reachable at start-up: not ready until it is', { status: registryClient.status });

  // The registry follows its changes on the adapter's subscriber connection: one connection keeps
  // them in order with the adapter's messages, so a process hears of a join before any message the
  // joiner's process sends after it.
  const registry = new RedisRegistry(registryClient, {
    nodeId: randomUUID(),
    heartbeatMs: config.nodeHeartbeatMs,
    logger,
    subscriber: subClient,
  });
  registry.start();
  return {
    registry,
    adapter: createAdapter(pubClient, subClient),
    async subscribed() {
      // The adapter subscribes, when Socket.IO creates it, without telling when that is done; a
      // PING on the same connection is answered after it, so nothing published to us is missed.
      await Promise.race([subClient.ping().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, STARTUP_WAIT_MS).unref())]);
    },
    async close() {
      await registry.close();
      await Promise.all(clients.map((client) => client.quit().catch(() => client.disconnect())));
    },
  };
}
