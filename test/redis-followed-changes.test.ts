import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import winston from 'winston';
import type { Member } from '../src/protocol/messages';
import { RedisRegistry } from '../src/registry/redis-registry';
import { connect, connectAs, type TestClient } from './helpers/client';
import { withCluster, type ServerProcess } from './helpers/process';
import { redisAvailable, startRedis, type TestRedis } from './helpers/redis';
import { connectDroppable, drop, eventually } from './fixtures/droppable-client';

/**
 * With Redis, a process keeps the rooms it relays in and the held sessions as the other processes
 * announce their changes, instead of reading Redis for every relayed message: what a member sees
 * must be what a read per message would have shown.
 */
const describeWithRedis = redisAvailable() ? describe : describe.skip;

const silent = winston.createLogger({ silent: true });
const P2P = { maxMembers: 2, maxRoomsOfKind: Number.POSITIVE_INFINITY };
const member = (uid: string): Member => ({ sid: randomUUID(), uid, dn: uid.toUpperCase() });

describeWithRedis('registries of two processes sharing one Redis', () => {
  let redis: TestRedis;
  const closers: (() => Promise<void>)[] = [];

  /** A registry as a server process makes it: a command connection and a subscriber connection. */
  const registry = async () => {
    const client = new Redis(redis.url);
    const subscriber = new Redis(redis.url, { enableReadyCheck: false });
    const made = new RedisRegistry(client, { nodeId: randomUUID(), heartbeatMs: 1000, logger: silent, subscriber });
    closers.push(async () => {
      await made.close();
      client.disconnect();
      subscriber.disconnect();
    });
    await eventually(async () => expect(made.followsChanges).toBe(true));
    // What has been published so far has reached it once its subscriber answers a PING.
    return { registry: made, caughtUp: () => subscriber.ping() };
  };

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  });
  afterAll(async () => {
    await redis.stop();
  });

  test('a join or a leave on one is seen by the other, which had the room cached', async () => {
    const [a, b] = [await registry(), await registry()];
    const [alice, bob] = [member('alice'), member('bob')];
    await a.registry.join('r', 'p2p', alice, P2P);
    await expect(b.registry.room('r')).resolves.toEqual({ rid: 'r', kind: 'p2p', members: [alice] });
    await a.registry.join('r', 'p2p', bob, P2P);
    await b.caughtUp();
    await expect(b.registry.room('r')).resolves.toEqual({ rid: 'r', kind: 'p2p', members: [alice, bob] });
    await a.registry.leave('r', alice.sid);
    await b.caughtUp();
    await expect(b.registry.room('r')).resolves.toEqual({ rid: 'r', kind: 'p2p', members: [bob] });
    await a.registry.closeConnection(bob.sid);
    await b.caughtUp();
    await expect(b.registry.room('r')).resolves.toBeUndefined();
  });

  test('a registry sees its own change at once, before its announcement comes back', async () => {
    const { registry: a } = await registry();
    const [alice, bob] = [member('alice'), member('bob')];
    for (let round = 0; round < 20; round++) {
      const rid = `own-${round}`;
      await a.join(rid, 'p2p', alice, P2P);
      await expect(a.room(rid)).resolves.toMatchObject({ members: [alice] });
      await a.join(rid, 'p2p', bob, P2P);
      await expect(a.room(rid)).resolves.toMatchObject({ members: [alice, bob] });
      await a.leave(rid, alice.sid);
      await expect(a.room(rid)).resolves.toMatchObject({ members: [bob] });
      await a.closeConnection(bob.sid);
      await expect(a.room(rid)).resolves.toBeUndefined();
    }
  });

  test('a session held by one is buffered for by the other, until it is resumed', async () => {
    const [a, b] = [await registry(), await registry()];
    const alice = member('alice');
    await a.registry.openConnection(alice.sid, 10);
    await a.registry.registerSession(alice.sid, 'token-a', alice, 'conn-1');
    const message = (id: string) => ({ id, from: 'r', to: alice.sid, jsongle: { action: 'session-text' } });

    await expect(a.registry.detach(alice.sid, 'conn-1', 1000)).resolves.toBe('held');
    await b.caughtUp();
    b.registry.bufferIfHeld(alice.sid, message('m1'), 10);
    b.registry.bufferIfHeld(alice.sid, message('m2'), 10);
    // Answered on b's connection after the buffer scripts it sent before.
    await expect(b.registry.findSession('token-a')).resolves.toMatchObject({ held: true });
    await expect(a.registry.resume(alice.sid, 'conn-2')).resolves.toEqual([message('m1'), message('m2')]);

    await b.caughtUp();
    b.registry.bufferIfHeld(alice.sid, message('live'), 10);
    await expect(a.registry.detach(alice.sid, 'conn-2', 1000)).resolves.toBe('held');
    await expect(a.registry.resume(alice.sid, 'conn-3')).resolves.toEqual([]);
  });

  test('after Redis restarts empty, nothing cached before is served', async () => {
    const [a, b] = [await registry(), await registry()];
    const alice = member('alice');
    await a.registry.join('r', 'p2p', alice, P2P);
    await expect(b.registry.room('r')).resolves.toMatchObject({ members: [alice] });
    // a goes away without leaving: after the restart nobody puts the room back.
    await closers.shift()?.();
    await redis.stop();
    await redis.start();
    await eventually(async () => expect(b.registry.followsChanges).toBe(true), 10000);
    await expect(b.registry.room('r')).resolves.toBeUndefined();
  });
});

describeWithRedis('two processes relaying through Redis', () => {
  let redis: TestRedis;
  let a: ServerProcess;
  let b: ServerProcess;
  const clients: TestClient[] = [];
  const open = async (server: ServerProcess, uid: string) => {
    const client = await connectAs(server.wsUrl, uid);
    clients.push(client);
    return client;
  };
  const text = (client: TestClient, rid: string, body: string) =>
    client.send(rid, { action: 'session-text', ...(rid.startsWith('#muc#') && { namespace: 'muc' }), description: { body } });

  withCluster(
    // At debug: the held-session test waits for the line that says the drop was noticed.
    { nodeHeartbeatMs: '300', reconnectGraceMs: '3000', logFileLevel: 'debug' },
    (cluster) => ({ a, b, redis } = cluster),
    clients,
  );

  test('a member who joins on B gets what a member on A sends right after the joined event, 20 times', async () => {
    const alice = await open(a, 'alice');
    const bob = await open(b, 'bob');
    for (let round = 0; round < 20; round++) {
      const rid = `fresh-${round}`;
      await alice.join(rid);
      // A relays in the room with alice alone first: A has read it (and kept it) before bob joins.
      alice.send(rid, { action: 'session-propose', sid: `c${round}`, initiator: 'alice', responder: 'bob' });
      await alice.nextAction('session-info', { reason: 'unreachable' });
      await bob.join(rid);
      await alice.nextAction('session-event', { event: 'joined' });
      const id = text(alice, rid, 'welcome');
      await expect(bob.next((m) => m.id === id)).resolves.toMatchObject({ from: rid, to: bob.sid });
      await alice.leave(rid);
      await bob.leave(rid);
      for (const client of [alice, bob]) client.inbox.length = 0;
    }
  });

  test('a joiner on B reaches the members on A and B at once, and a member who left gets nothing', async () => {
    const alice = await open(a, 'alice');
    const bob = await open(b, 'bob');
    await alice.mucJoin('#muc#q');
    await bob.mucJoin('#muc#q');
    // Both processes relay in the room, so both have read it.
    text(alice, '#muc#q', 'from A');
    await bob.nextAction('session-text');
    text(bob, '#muc#q', 'from B');
    await alice.nextAction('session-text');

    const carol = await open(b, 'carol');
    await carol.mucJoin('#muc#q');
    const fromCarol = text(carol, '#muc#q', 'hello from the joiner');
    await expect(alice.next((m) => m.id === fromCarol)).resolves.toMatchObject({ from: '#muc#q/carol' });
    await expect(bob.next((m) => m.id === fromCarol)).resolves.toMatchObject({ from: '#muc#q/carol' });

    // Leaving on B: A hears of it before its 'left' reaches alice.
    await bob.leave('#muc#q');
    await alice.nextAction('session-event', { event: 'left' });
    const afterBob = text(alice, '#muc#q', 'bob is gone');
    await expect(carol.next((m) => m.id === afterBob)).resolves.toBeDefined();
    // Leaving on A: B hears of it before its 'left' reaches carol.
    await alice.leave('#muc#q');
    await carol.nextAction('session-event', { event: 'left' });
    const afterAlice = text(carol, '#muc#q', 'alice is gone');
    await carol.nextAction('session-event', { event: 'ack' });
    await alice.expectNothing((m) => m.id === afterAlice || m.id === afterBob, 200);
    await bob.expectNothing((m) => m.jsongle.action === 'session-text', 10);
  });

  test('a member held on B gets, when back, what was sent to it from A meanwhile', async () => {
    const bob = await open(a, 'bob');
    const first = await connectDroppable(b.wsUrl);
    clients.push(first);
    const resume = String((await first.hello('alice')).jsongle.description?.resume);
    await first.join('held-call');
    await bob.join('held-call');
    // A relays to alice (live) first: it has read the room, and knows alice is not held.
    const live = text(bob, 'held-call', 'live');
    await first.next((m) => m.id === live);

    drop(first);
    // Messages sent before B notices the drop go to the dead connection: wait until it has.
    await eventually(async () => {
      const log = readdirSync(b.logDir)
        .filter((name) => name.endsWith('.log'))
        .map((name) => readFileSync(path.join(b.logDir, name), 'utf8'))
        .join('');
      expect(log).toContain('session held for a resume');
    });
    const sent = [0, 1, 2].map((i) => text(bob, 'held-call', `while away ${i}`));
    for (let i = 0; i < 3; i++) await bob.nextAction('session-event', { event: 'ack' });

    const back = await connect(b.wsUrl, { resume });
    clients.push(back);
    await expect(back.nextAction('session-event', { event: 'resumed' })).resolves.toMatchObject({
      jsongle: { description: { buffered: 3 } },
    });
    for (const id of sent) await expect(back.next((m) => m.id === id)).resolves.toMatchObject({ to: first.sid });
    // Resumed: delivered live, once, and nothing kept for a later resume.
    const after = text(bob, 'held-call', 'after');
    await expect(back.next((m) => m.id === after)).resolves.toBeDefined();
    await back.expectNothing((m) => m.id === after, 100);
  });

  test('a relay to a member on the other process costs Redis no command but the adapter’s publish', async () => {
    const alice = await open(a, 'alice');
    const bob = await open(b, 'bob');
    await alice.join('quiet');
    await bob.join('quiet');
    await alice.nextAction('session-event', { event: 'joined' });
    // The first relay each way reads the room.
    for (const [from, to] of [
      [alice, bob],
      [bob, alice],
    ] as const) {
      text(from, 'quiet', 'first');
      await to.nextAction('session-text');
    }
    const probe = new Redis(redis.url);
    const monitor = await probe.monitor(); // a second connection, in monitor mode
    const commands: string[] = [];
    monitor.on('monitor', (_time: string, args: string[]) => commands.push(args.join(' ')));
    try {
      for (let i = 0; i < 10; i++) {
        text(alice, 'quiet', `a${i}`);
        await bob.nextAction('session-text');
        text(bob, 'quiet', `b${i}`);
        await alice.nextAction('session-text');
      }
      // The monitor feed lags: it has shown everything up to here once it shows this.
      const marker = `end-${randomUUID()}`;
      await probe.exists(marker);
      await eventually(async () => expect(commands.some((command) => command.includes(marker))).toBe(true));
    } finally {
      monitor.disconnect();
      probe.disconnect();
    }
    // Heartbeats (and the relay counts, once a second) go on meanwhile; nothing per message: no
    // room read, no buffer script (which would carry the message).
    expect(commands.filter((command) => /^publish /i.test(command))).toHaveLength(20);
    expect(
      commands.filter((command) => /^hgetall /i.test(command) || (/^eval/i.test(command) && command.includes('session-text'))),
    ).toEqual([]);
  });

  test('after a Redis restart, changes on one process still reach the other', async () => {
    const alice = await open(a, 'alice');
    const bob = await open(b, 'bob');
    const carol = await open(b, 'carol');
    for (const client of [alice, bob, carol]) await client.mucJoin('#muc#r');
    text(alice, '#muc#r', 'before');
    await bob.nextAction('session-text');
    await carol.nextAction('session-text');

    await redis.stop();
    await redis.start();
    // Until every process has its seats back and its subscriptions again, a relay may fail: retry.
    await eventually(async () => {
      const id = text(alice, '#muc#r', 'after the restart');
      await bob.next((m) => m.id === id, 500);
      await carol.next((m) => m.id === id, 500);
      const back = text(carol, '#muc#r', 'after the restart');
      await alice.next((m) => m.id === back, 500);
    }, 10000);
    await bob.leave('#muc#r');
    await alice.nextAction('session-event', { event: 'left' });
    const id = text(alice, '#muc#r', 'bob left');
    await expect(carol.next((m) => m.id === id)).resolves.toBeDefined();
    await bob.expectNothing((m) => m.id === id, 200);
  });
});
