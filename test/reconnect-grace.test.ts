import { connect, connectAs, refusal, type TestClient } from './helpers/client';
import { withCluster, type ServerProcess } from './helpers/process';
import { redisAvailable } from './helpers/redis';
import { startServer, type TestServer } from './helpers/server';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { connectDroppable, drop, eventually } from './fixtures/droppable-client';

/**
 * Reconnect grace (issue #9): a dropped connection's session keeps its seats for reconnectGraceMs,
 * messages to it are kept, and a connection presenting its resume token takes it all back.
 */

const GRACE_MS = 1500;

/** A member whose connection can be dropped, with the resume token of its hello. */
async function droppableMember(url: string, uid: string): Promise<{ client: TestClient; resume: string }> {
  const client = await connectDroppable(url);
  const ack = await client.hello(uid);
  const resume = ack.jsongle.description?.resume;
  if (typeof resume !== 'string') throw new Error(`no resume token in ${JSON.stringify(ack)}`);
  expect(ack.jsongle.description).toMatchObject({ reconnectGraceMs: GRACE_MS });
  return { client, resume };
}

describe('reconnect grace on one process', () => {
  let server: TestServer;
  const clients: TestClient[] = [];
  const keep = (client: TestClient) => {
    clients.push(client);
    return client;
  };

  beforeEach(async () => {
    server = await startServer({ reconnectGraceMs: String(GRACE_MS) });
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await server.close();
  });

  test('a dropped member comes back with its token: same identity and seat, buffered messages, no left/joined', async () => {
    const bob = keep(await connectAs(server.wsUrl, 'bob', {}));
    const { client: first, resume } = await droppableMember(server.wsUrl, 'alice');
    keep(first);
    await first.join('call');
    await bob.join('call');
    await first.nextAction('session-event', { event: 'joined' });

    drop(first);
    // Messages sent before the server notices a drop go to the dead connection: wait for it.
    await eventually(async () => expect(await server.server.registry.findSession(resume)).toMatchObject({ held: true }));
    // While alice is away, bob's messages are kept for her, and bob is not told she left.
    const sent = [0, 1, 2].map((i) => bob.send('call', { action: 'session-text', description: { body: `while away ${i}` } }));
    for (let i = 0; i < 3; i++) await bob.nextAction('session-event', { event: 'ack' });

    const back = keep(await connect(server.wsUrl, { resume }));
    const resumed = await back.nextAction('session-event', { event: 'resumed' });
    expect(resumed).toMatchObject({
      to: first.sid,
      jsongle: { description: { resume, buffered: 3, member: { uid: 'alice', sid: first.sid } } },
    });
    for (const id of sent) await expect(back.next((m) => m.id === id)).resolves.toMatchObject({ from: 'call', to: first.sid });
    await back.expectNothing((m) => m.jsongle.query === 'session-hello', 50);

    // The seat is hers still: messages flow both ways, and bob saw no flapping.
    back.send('call', { action: 'session-text', description: { body: 'back' } });
    await expect(bob.nextAction('session-text')).resolves.toMatchObject({ from: 'call' });
    await bob.expectNothing((m) => m.jsongle.event === 'left' || m.jsongle.event === 'joined', GRACE_MS + 300);
    await expect(server.server.registry.room('call')).resolves.toMatchObject({
      members: [{ uid: 'alice', sid: first.sid }, { uid: 'bob' }],
    });
  });

  test('after the grace the others are told left, and the token no longer resumes anything', async () => {
    const bob = keep(await connectAs(server.wsUrl, 'bob', {}));
    const { client: first, resume } = await droppableMember(server.wsUrl, 'alice');
    keep(first);
    await first.join('call');
    await bob.join('call');
    const droppedAt = Date.now();
    drop(first);
    const left = await bob.nextAction('session-event', { event: 'left' }, GRACE_MS + 3000);
    expect(left.jsongle.description).toMatchObject({ rid: 'call', member: { uid: 'alice' } });
    expect(Date.now() - droppedAt).toBeGreaterThanOrEqual(GRACE_MS - 100);

    const late = keep(await connect(server.wsUrl, { resume }));
    await expect(late.nextAction('iq-get', { query: 'session-hello' })).resolves.toMatchObject({
      to: expect.not.stringMatching(first.sid) as unknown,
    });
  });

  test('a second connection with the token takes the seat over; the first is told and closed', async () => {
    const bob = keep(await connectAs(server.wsUrl, 'bob', {}));
    const { client: first, resume } = await droppableMember(server.wsUrl, 'alice');
    keep(first);
    await first.join('call');
    await bob.join('call');
    const firstClosed = new Promise((resolve) => first.socket.once('disconnect', resolve));

    const second = keep(await connect(server.wsUrl, { resume }));
    await expect(second.nextAction('session-event', { event: 'resumed' })).resolves.toMatchObject({ to: first.sid });
    await expect(first.nextAction('session-event', { event: 'replaced' })).resolves.toMatchObject({ to: first.sid });
    await expect(firstClosed).resolves.toBe('io server disconnect');

    bob.send('call', { action: 'session-text', description: { body: 'to the new device' } });
    await expect(second.nextAction('session-text')).resolves.toMatchObject({ to: first.sid });
    await bob.expectNothing((m) => m.jsongle.event === 'left' || m.jsongle.event === 'joined', 300);
    await expect(server.server.registry.counts()).resolves.toMatchObject({ connections: 2, rooms: 1 });
  });

  test('a resume still needs the application token', async () => {
    const guarded = await startServer({ reconnectGraceMs: String(GRACE_MS), appToken: 'app' });
    try {
      const alice = keep(await connect(guarded.wsUrl, { appToken: 'app' }));
      const ack = await alice.hello('alice');
      const resume = String(ack.jsongle.description?.resume);
      await expect(refusal(guarded.wsUrl, { appToken: 'wrong', resume })).resolves.toMatchObject({ message: 'unauthorized' });
      await expect(refusal(guarded.wsUrl, { resume })).resolves.toMatchObject({ message: 'unauthorized' });
    } finally {
      await guarded.close();
    }
  });
});

const describeWithRedis = redisAvailable() ? describe : describe.skip;

describeWithRedis('reconnect grace across processes', () => {
  let a: ServerProcess;
  let b: ServerProcess;

  withCluster({ reconnectGraceMs: String(GRACE_MS), nodeHeartbeatMs: '300', logFileLevel: 'debug' }, (cluster) => ({ a, b } = cluster));

  test('dropped on A, back on B: same seat, buffered messages, no left', async () => {
    const bob = await connectAs(a.wsUrl, 'bob');
    const carol = await connectAs(b.wsUrl, 'carol');
    const { client: alice, resume } = await droppableMember(a.wsUrl, 'alice');
    try {
      for (const member of [alice, bob, carol]) await member.mucJoin('#muc#x');
      drop(alice);
      // Messages sent before A notices the drop go to the dead connection: wait until it has.
      await eventually(async () => {
        const log = readdirSync(a.logDir)
          .filter((name) => name.endsWith('.log'))
          .map((name) => readFileSync(path.join(a.logDir, name), 'utf8'))
          .join('');
        expect(log).toContain('session held for a resume');
      });
      const fromA = bob.send('#muc#x', { action: 'session-text', description: { body: 'from A' } });
      const fromB = carol.send('#muc#x', { action: 'session-text', description: { body: 'from B' } });
      await bob.nextAction('session-event', { event: 'ack' });
      await carol.nextAction('session-event', { event: 'ack' });

      const back = await connect(b.wsUrl, { resume });
      try {
        await expect(back.nextAction('session-event', { event: 'resumed' })).resolves.toMatchObject({ to: alice.sid });
        await expect(back.next((m) => m.id === fromA)).resolves.toMatchObject({ from: '#muc#x/bob', to: alice.sid });
        await expect(back.next((m) => m.id === fromB)).resolves.toMatchObject({ from: '#muc#x/carol', to: alice.sid });
        back.send('#muc#x', { action: 'session-text', description: { body: 'back on B' } });
        await expect(bob.next((m) => m.jsongle.action === 'session-text' && m.from === '#muc#x/alice')).resolves.toMatchObject({
          to: bob.sid,
        });
        await bob.expectNothing((m) => m.jsongle.event === 'left', GRACE_MS + 500);
        await carol.expectNothing((m) => m.jsongle.event === 'left', 10);
      } finally {
        back.close();
      }
    } finally {
      for (const client of [alice, bob, carol]) client.close();
    }
  });
});
