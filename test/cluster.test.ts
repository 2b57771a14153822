import request from 'supertest';
import { connectAs, refusal, type TestClient } from './helpers/client';
import { spawnServer, withCluster, type ServerProcess } from './helpers/process';
import { redisAvailable, type TestRedis } from './helpers/redis';

/**
 * Two real server processes sharing one real Redis (PROTOCOL.md §10 redisUrl): every behaviour
 * holds across processes as on one.
 */
const describeWithRedis = redisAvailable() ? describe : describe.skip;

const HEARTBEAT_MS = 300;

describeWithRedis('two processes through Redis', () => {
  let redis: TestRedis;
  let a: ServerProcess;
  let b: ServerProcess;
  const clients: TestClient[] = [];
  const open = async (server: ServerProcess, uid: string) => {
    const client = await connectAs(server.wsUrl, uid);
    clients.push(client);
    return client;
  };
  /** Waits, bounded, until a process has its Redis back (after a test that stopped it). */
  const ready = async (server: ServerProcess) => {
    const deadline = Date.now() + 10000;
    while ((await request(server.restUrl).get('/ready').disableTLSCerts()).status !== 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const stats = async (server: ServerProcess) =>
    (await request(server.restUrl).get('/stats').disableTLSCerts()).body as Record<string, number>;

  withCluster({ nodeHeartbeatMs: String(HEARTBEAT_MS), maxConcurrentUsers: '6' }, (cluster) => ({ a, b, redis } = cluster), clients);

  test('members on A and B see each other join, and calls and chat cross in both directions', async () => {
    const alice = await open(a, 'alice');
    const bob = await open(b, 'bob');
    await alice.join('x-room');
    const bobJoin = await bob.join('x-room');
    expect(bobJoin.jsongle.description).toMatchObject({ rid: 'x-room', members: [{ uid: 'alice', sid: alice.sid }] });
    await expect(alice.nextAction('session-event', { event: 'joined' })).resolves.toMatchObject({
      to: alice.sid,
      jsongle: { description: { member: { uid: 'bob', sid: bob.sid } } },
    });

    const offer = alice.send('x-room', { action: 'session-propose', sid: 'c1', initiator: 'alice', responder: 'bob' });
    await expect(bob.nextAction('session-propose')).resolves.toMatchObject({ id: offer, from: 'x-room', to: bob.sid });
    await alice.nextAction('session-info', { reason: 'trying' });
    bob.send('x-room', { action: 'session-proceed', sid: 'c1' });
    await expect(alice.nextAction('session-proceed')).resolves.toMatchObject({ from: 'x-room', to: alice.sid });

    const carol = await open(b, 'carol');
    await alice.mucJoin('#muc#x');
    await bob.mucJoin('#muc#x');
    await carol.mucJoin('#muc#x');
    const text = carol.send('#muc#x', { action: 'session-text', namespace: 'muc', description: { body: 'hi from B' } });
    for (const reader of [alice, bob]) {
      await expect(reader.nextAction('session-text')).resolves.toMatchObject({ id: text, from: '#muc#x/carol', to: reader.sid });
    }
    await expect(carol.nextAction('session-event', { event: 'ack' })).resolves.toMatchObject({ jsongle: { description: { mid: text } } });
  });

  test('racing for the last seat of a P2P room from both processes: exactly one wins, 50 times', async () => {
    const first = await open(a, 'first');
    const onA = await open(a, 'racer-a');
    const onB = await open(b, 'racer-b');
    for (let round = 0; round < 50; round++) {
      const rid = `race-${round}`;
      await first.join(rid);
      const answers = await Promise.all([onA.join(rid), onB.join(rid)]);
      const codes = answers.map((answer) => (answer.jsongle.action === 'iq-result' ? 'joined' : answer.jsongle.description?.errorCode));
      expect(codes.sort()).toEqual([403001, 'joined']);
      for (const client of [first, onA, onB]) await client.leave(rid);
      for (const client of [first, onA, onB]) client.inbox.length = 0;
    }
  });

  test('maxConcurrentUsers holds for the cluster, not per process', async () => {
    for (let i = 0; i < 3; i++) await open(a, `a${i}`);
    for (let i = 0; i < 3; i++) await open(b, `b${i}`);
    await expect(refusal(b.wsUrl)).resolves.toMatchObject({ message: 'server-full', data: { errorCode: 503001 } });
    await expect(refusal(a.wsUrl)).resolves.toMatchObject({ message: 'server-full' });
  });

  test('SIGKILL of a process: the members on the other get left within the heartbeat expiry', async () => {
    const c = await spawnServer({ redisUrl: redis.url, nodeHeartbeatMs: String(HEARTBEAT_MS), maxConcurrentUsers: '6' });
    try {
      const alice = await open(a, 'alice');
      const doomed = await connectAs(c.wsUrl, 'doomed');
      await alice.join('k-room');
      await doomed.join('k-room');
      await alice.nextAction('session-event', { event: 'joined' });
      const killedAt = Date.now();
      await c.stop('SIGKILL');
      const left = await alice.nextAction('session-event', { event: 'left' }, HEARTBEAT_MS * 3 + 3000);
      expect(left.jsongle.description).toMatchObject({ rid: 'k-room', member: { uid: 'doomed', sid: doomed.sid } });
      expect(Date.now() - killedAt).toBeLessThan(HEARTBEAT_MS * 5 + 2000);
      // The seat is free again for someone else.
      const newcomer = await open(b, 'newcomer');
      await expect(newcomer.join('k-room')).resolves.toMatchObject({ jsongle: { action: 'iq-result' } });
      doomed.close();
    } finally {
      // Whatever failed above, no process outlives the test.
      await c.stop('SIGKILL');
    }
  });

  test('a Redis restart: /ping stays up, /ready goes 503 then 200, and service resumes', async () => {
    await redis.stop();
    await expect(request(a.restUrl).get('/ping').disableTLSCerts()).resolves.toMatchObject({ status: 200 });
    const notReady = await request(a.restUrl).get('/ready').disableTLSCerts();
    expect(notReady.status).toBe(503);
    expect(notReady.body).toMatchObject({ status: 'not-ready', reason: expect.stringContaining('redis') as unknown });
    await redis.start();
    const deadline = Date.now() + 10000;
    while ((await request(a.restUrl).get('/ready').disableTLSCerts()).status !== 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await expect(request(b.restUrl).get('/ready').disableTLSCerts()).resolves.toMatchObject({ status: 200 });
    const alice = await open(a, 'alice');
    const bob = await open(b, 'bob');
    await alice.join('after-restart');
    await bob.join('after-restart');
    bob.send('after-restart', { action: 'session-text', description: { body: 'back' } });
    await expect(alice.nextAction('session-text')).resolves.toMatchObject({ from: 'after-restart' });
    expect((await stats(a)).users_count).toBeGreaterThanOrEqual(1);
  });

  test('Redis restarted empty: every process puts its members back, and rooms carry on without a new join', async () => {
    const alice = await open(a, 'alice');
    const bob = await open(b, 'bob');
    await alice.join('survivor');
    await bob.join('survivor');
    await alice.nextAction('session-event', { event: 'joined' });

    await redis.stop();
    await redis.start();
    const deadline = Date.now() + 10000;
    for (const server of [a, b]) {
      while ((await request(server.restUrl).get('/ready').disableTLSCerts()).status !== 200 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    // Restoring runs as each process reconnects: poll, bounded, until bob's message gets through.
    let delivered = false;
    while (!delivered && Date.now() < deadline) {
      bob.send('survivor', { action: 'session-text', description: { body: 'still here' } });
      const answer = await bob.next((m) => m.jsongle.event === 'ack' || m.jsongle.action === 'session-error');
      delivered = answer.jsongle.event === 'ack';
      if (!delivered) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(delivered).toBe(true);
    await expect(alice.next((m) => m.jsongle.action === 'session-text')).resolves.toMatchObject({ from: 'survivor', to: alice.sid });
    await alice.expectNothing((m) => m.jsongle.event === 'left', 200);
    const room = await request(a.restUrl).get('/rooms/survivor').disableTLSCerts();
    expect(room.status).toBe(200);
    // Both seats are back (in the order the processes restored them).
    const uids = (room.body as { members: { uid: string }[] }).members.map((member) => member.uid);
    expect(uids.sort()).toEqual(['alice', 'bob']);
  });

  test('while Redis is down, members on one process still reach each other; joins get 503002', async () => {
    const alice = await open(a, 'alice');
    const carol = await open(a, 'carol');
    await alice.join('same-process');
    await carol.join('same-process');
    await redis.stop();
    try {
      carol.send('same-process', { action: 'session-text', description: { body: 'no Redis needed' } });
      await expect(alice.nextAction('session-text')).resolves.toMatchObject({ from: 'same-process', to: alice.sid });
      await expect(carol.nextAction('session-event', { event: 'ack' })).resolves.toBeDefined();
      const refused = await alice.join('another');
      expect(refused.jsongle).toMatchObject({ action: 'iq-error', description: { errorCode: 503002 } });
    } finally {
      await redis.start();
    }
  });

  test('a member who leaves during a Redis outage is taken out, and the others told, once Redis is back', async () => {
    await ready(a);
    const alice = await open(a, 'alice');
    const bob = await open(a, 'bob');
    await alice.join('outage-leaver');
    await bob.join('outage-leaver');
    await redis.stop();
    alice.close();
    await redis.start();
    const left = await bob.nextAction('session-event', { event: 'left' }, 10000);
    expect(left.jsongle.description).toMatchObject({ rid: 'outage-leaver', member: { uid: 'alice' } });
    const room = await request(a.restUrl).get('/rooms/outage-leaver').disableTLSCerts();
    expect((room.body as { members: { uid: string }[] }).members.map((member) => member.uid)).toEqual(['bob']);
  });
});
