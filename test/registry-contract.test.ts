import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import winston from 'winston';
import type { Member } from '../src/protocol/messages';
import { MemoryRegistry } from '../src/registry/memory-registry';
import { RedisRegistry } from '../src/registry/redis-registry';
import type { Registry } from '../src/registry/registry';
import { redisAvailable, startRedis, type TestRedis } from './helpers/redis';

/** The one contract every registry keeps; the signaling code relies on nothing else. */

const silent = winston.createLogger({ silent: true });
const P2P = { maxMembers: 2, maxRoomsOfKind: Number.POSITIVE_INFINITY };
const MUC = { maxMembers: 3, maxRoomsOfKind: 2 };
const member = (uid: string): Member => ({ sid: randomUUID(), uid, dn: uid.toUpperCase() });

interface Implementation {
  name: string;
  create: () => Promise<{ registry: Registry; close: () => Promise<void> }>;
}

let redis: TestRedis | undefined;
const implementations: Implementation[] = [
  {
    name: 'MemoryRegistry',
    create: async () => {
      const registry = new MemoryRegistry();
      return { registry, close: () => registry.close() };
    },
  },
];
if (redisAvailable()) {
  implementations.push(
    {
      name: 'RedisRegistry',
      create: async () => {
        redis ??= await startRedis();
        const client = new Redis(redis.url);
        await client.flushall();
        const registry = new RedisRegistry(client, { nodeId: randomUUID(), heartbeatMs: 1000, logger: silent });
        return {
          registry,
          close: async () => {
            await registry.close();
            client.disconnect();
          },
        };
      },
    },
    {
      // As a server process makes it: rooms and held sessions followed, not read every time.
      name: 'RedisRegistry following changes',
      create: async () => {
        redis ??= await startRedis();
        const client = new Redis(redis.url);
        const subscriber = new Redis(redis.url, { enableReadyCheck: false });
        await client.flushall();
        const registry = new RedisRegistry(client, { nodeId: randomUUID(), heartbeatMs: 1000, logger: silent, subscriber });
        const deadline = Date.now() + 3000;
        while (!registry.followsChanges && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
        expect(registry.followsChanges).toBe(true);
        return {
          registry,
          close: async () => {
            await registry.close();
            client.disconnect();
            subscriber.disconnect();
          },
        };
      },
    },
  );
}

afterAll(async () => {
  await redis?.stop();
});

describe.each(implementations)('$name', ({ create }) => {
  let registry: Registry;
  let close: () => Promise<void>;
  beforeEach(async () => {
    ({ registry, close } = await create());
  });
  afterEach(async () => {
    await close();
  });

  test('counts connections up to the limit and frees a seat on close', async () => {
    await expect(registry.openConnection('a', 2)).resolves.toBe(true);
    await expect(registry.openConnection('b', 2)).resolves.toBe(true);
    await expect(registry.openConnection('c', 2)).resolves.toBe(false);
    await registry.closeConnection('a');
    await expect(registry.openConnection('c', 2)).resolves.toBe(true);
    await expect(registry.counts()).resolves.toEqual({ connections: 2, rooms: 0 });
  });

  test('a P2P room holds two members, in the order they joined', async () => {
    const [alice, bob, carol] = [member('alice'), member('bob'), member('carol')];
    const created: string[] = [];
    registry.on('room-created', ({ rid }) => created.push(rid));
    await expect(registry.join('r', 'p2p', alice, P2P)).resolves.toEqual({
      status: 'joined',
      created: true,
      room: { rid: 'r', kind: 'p2p', members: [alice] },
    });
    await expect(registry.join('r', 'p2p', bob, P2P)).resolves.toEqual({
      status: 'joined',
      created: false,
      room: { rid: 'r', kind: 'p2p', members: [alice, bob] },
    });
    await expect(registry.join('r', 'p2p', carol, P2P)).resolves.toEqual({ status: 'full' });
    await expect(registry.join('r', 'p2p', alice, P2P)).resolves.toEqual({
      status: 'already-member',
      room: { rid: 'r', kind: 'p2p', members: [alice, bob] },
    });
    await expect(registry.room('r')).resolves.toEqual({ rid: 'r', kind: 'p2p', members: [alice, bob] });
    expect(created).toEqual(['r']);
  });

  test('a room keeps the kind it was created with', async () => {
    await registry.join('r', 'p2p', member('alice'), P2P);
    await expect(registry.join('r', 'muc', member('bob'), MUC)).resolves.toEqual({ status: 'wrong-kind' });
  });

  test('a connection is in a limited number of MUC rooms', async () => {
    const alice = member('alice');
    await registry.join('m1', 'muc', alice, MUC);
    await registry.join('m2', 'muc', alice, MUC);
    await expect(registry.join('m3', 'muc', alice, MUC)).resolves.toEqual({ status: 'too-many-rooms' });
    // P2P rooms do not count against the MUC limit.
    await expect(registry.join('p', 'p2p', alice, P2P)).resolves.toMatchObject({ status: 'joined' });
    await registry.leave('m1', alice.sid);
    await expect(registry.join('m3', 'muc', alice, MUC)).resolves.toMatchObject({ status: 'joined' });
  });

  test('leaving: the others remain, an emptied room is deleted', async () => {
    const [alice, bob] = [member('alice'), member('bob')];
    const deleted: string[] = [];
    registry.on('room-deleted', ({ rid }) => deleted.push(rid));
    await registry.join('r', 'muc', alice, MUC);
    await registry.join('r', 'muc', bob, MUC);
    await expect(registry.leave('r', alice.sid)).resolves.toEqual({ status: 'left', room: { rid: 'r', kind: 'muc', members: [bob] } });
    await expect(registry.leave('r', alice.sid)).resolves.toEqual({ status: 'not-member' });
    await expect(registry.leave('r', bob.sid)).resolves.toEqual({ status: 'left', room: { rid: 'r', kind: 'muc', members: [] } });
    await expect(registry.room('r')).resolves.toBeUndefined();
    expect(deleted).toEqual(['r']);
    await expect(registry.counts()).resolves.toEqual({ connections: 0, rooms: 0 });
  });

  test('closing a connection takes it out of every room', async () => {
    const [alice, bob] = [member('alice'), member('bob')];
    await registry.openConnection(alice.sid, 10);
    await registry.join('p', 'p2p', alice, P2P);
    await registry.join('p', 'p2p', bob, P2P);
    await registry.join('m', 'muc', alice, MUC);
    const rooms = await registry.closeConnection(alice.sid);
    expect(rooms.sort((a, b) => a.rid.localeCompare(b.rid))).toEqual([
      { rid: 'm', kind: 'muc', members: [] },
      { rid: 'p', kind: 'p2p', members: [bob] },
    ]);
    await expect(registry.counts()).resolves.toEqual({ connections: 0, rooms: 1 });
    await expect(registry.closeConnection(alice.sid)).resolves.toEqual([]);
  });

  test('concurrent joins never overfill a room', async () => {
    const contenders = Array.from({ length: 20 }, (_, i) => member(`u${i}`));
    const outcomes = await Promise.all(contenders.map((m) => registry.join('race', 'p2p', m, P2P)));
    expect(outcomes.filter((o) => o.status === 'joined')).toHaveLength(2);
    await expect(registry.room('race')).resolves.toMatchObject({ members: expect.any(Array) as unknown });
    expect((await registry.room('race'))?.members).toHaveLength(2);
  });

  test('details: members with the time they joined, relays counted, nothing left of a deleted room', async () => {
    const [alice, bob] = [member('alice'), member('bob')];
    await registry.join('d', 'muc', alice, MUC);
    await registry.join('d', 'muc', bob, MUC);
    registry.countRelay('d');
    registry.countRelay('d');
    registry.countRelay('missing');
    const [details] = await registry.details('d');
    expect(details).toEqual({
      rid: 'd',
      kind: 'muc',
      created: expect.any(String) as unknown,
      messages: 2,
      members: [
        { ...alice, since: expect.any(String) as unknown },
        { ...bob, since: expect.any(String) as unknown },
      ],
    });
    await expect(registry.details()).resolves.toHaveLength(1);
    await registry.leave('d', alice.sid);
    await registry.leave('d', bob.sid);
    registry.countRelay('d');
    await expect(registry.details()).resolves.toEqual([]);
    await expect(registry.details('d')).resolves.toEqual([]);
    // A room made again under the same id starts afresh.
    await registry.join('d', 'muc', alice, MUC);
    await expect(registry.details('d')).resolves.toMatchObject([{ messages: 0 }]);
  });

  test('a session is held, buffered for, resumed by another connection, and expires only if still held', async () => {
    const alice = member('alice');
    await registry.openConnection(alice.sid, 10);
    await registry.join('r', 'p2p', alice, P2P);
    await registry.registerSession(alice.sid, 'token-a', alice, 'conn-1');
    await expect(registry.findSession('token-a')).resolves.toEqual({ sid: alice.sid, member: alice, connection: 'conn-1', held: false });
    await expect(registry.findSession('nope')).resolves.toBeUndefined();
    const message = (id: string) => ({ id, from: 'r', to: alice.sid, jsongle: { action: 'session-text' } });

    registry.bufferIfHeld(alice.sid, message('live'), 10); // not held: not kept
    await expect(registry.detach(alice.sid, 'conn-1', 1000)).resolves.toBe('held');
    for (const id of ['m1', 'm2', 'm3']) registry.bufferIfHeld(alice.sid, message(id), 2);
    await expect(registry.resume(alice.sid, 'conn-2')).resolves.toEqual([message('m2'), message('m3')]);
    // The first connection's grace ends, but the session is conn-2's now.
    await expect(registry.expire(alice.sid, 'conn-1')).resolves.toBe(false);
    await expect(registry.detach(alice.sid, 'conn-1', 1000)).resolves.toBe('taken-over');
    await expect(registry.room('r')).resolves.toMatchObject({ members: [alice] });

    await expect(registry.detach(alice.sid, 'conn-2', 1000)).resolves.toBe('held');
    await expect(registry.expire(alice.sid, 'conn-2')).resolves.toBe(true);
    await registry.closeConnection(alice.sid);
    await expect(registry.findSession('token-a')).resolves.toBeUndefined();
    await expect(registry.resume(alice.sid, 'conn-3')).resolves.toBeUndefined();
    await expect(registry.detach(alice.sid, 'conn-2', 0)).resolves.toBe('gone');
    await expect(registry.counts()).resolves.toEqual({ connections: 0, rooms: 0 });
  });

  test('is ready', async () => {
    await expect(registry.health()).resolves.toEqual({ ready: true });
  });
});
