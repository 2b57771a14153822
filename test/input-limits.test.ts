import { randomUUID } from 'node:crypto';
import type { Envelope } from '../src/protocol/envelope';
import { connectAs, DEFAULT_TIMEOUT_MS, type TestClient } from './helpers/client';
import { startServer, withServer, type TestServer } from './helpers/server';

/** PROTOCOL.md §6 (limits on input) and §7 (errors): bad input gets an error, never a dead connection. */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const SERVER_ID = 'jsongle-server';

/** Asserts a session-error envelope (§7) and returns its description. */
function expectSessionError(message: Envelope, to: string, errorCode: number): Record<string, unknown> {
  expect(message.id).toMatch(UUID);
  expect(message.from).toBe(SERVER_ID);
  expect(message.to).toBe(to);
  expect(message.jsongle.action).toBe('session-error');
  const description = message.jsongle.description ?? {};
  expect(description.errorCode).toBe(errorCode);
  expect(typeof description.errorDetails).toBe('string');
  expect(String(description.errorDetails).trim().length).toBeGreaterThan(0);
  return description;
}

const isSessionError = (code: number) => (m: Envelope) => m.jsongle.action === 'session-error' && m.jsongle.description?.errorCode === code;

/** A session-text envelope whose serialized JSON is exactly `bytes` bytes long (ASCII padding). */
function envelopeOfSize(to: string, bytes: number): { id: string; from: null; to: string; jsongle: Record<string, unknown> } {
  const make = (pad: string) => ({
    id: randomUUID(),
    from: null,
    to,
    jsongle: { action: 'session-text', namespace: 'message', description: { body: pad } },
  });
  const empty = JSON.stringify(make('')).length;
  if (bytes < empty) throw new Error(`an envelope cannot be smaller than ${empty} bytes`);
  const envelope = make('x'.repeat(bytes - empty));
  expect(Buffer.byteLength(JSON.stringify(envelope))).toBe(bytes);
  return envelope;
}

/**
 * The next matching envelope, failing at once (instead of timing out) if the server closes the
 * connection first: §6 says bad input never costs a client its connection.
 */
function nextWhileConnected(client: TestClient, match: (m: Envelope) => boolean = () => true): Promise<Envelope> {
  return new Promise((resolve, reject) => {
    const onDisconnect = (reason: string) => {
      reject(
        new Error(`${client.uid}: the connection was closed (${reason}) instead of answering; inbox: ${JSON.stringify(client.inbox)}`),
      );
    };
    if (!client.socket.connected) {
      onDisconnect('already closed');
      return;
    }
    client.socket.once('disconnect', onDisconnect);
    client.next(match).then(
      (message) => {
        client.socket.off('disconnect', onDisconnect);
        resolve(message);
      },
      (error: unknown) => {
        client.socket.off('disconnect', onDisconnect);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

/** Proves the connection is still up and usable: a join of a fresh room succeeds. */
async function expectJoinWorks(client: TestClient): Promise<void> {
  const rid = `alive-${randomUUID()}`;
  const answer = await client.join(rid);
  expect(answer.to).toBe(client.sid);
  expect(answer.jsongle).toMatchObject({ action: 'iq-result', query: 'session-join', description: { rid, members: [] } });
  expect(client.socket.connected).toBe(true);
}

/** Two members in one P2P room, the inbox of each emptied of the join traffic. */
async function pairInRoom(server: TestServer, rid: string): Promise<[TestClient, TestClient]> {
  const alice = await connectAs(server.wsUrl, 'alice');
  const bob = await connectAs(server.wsUrl, 'bob');
  await alice.join(rid);
  await bob.join(rid);
  await alice.nextAction('session-event', { event: 'joined' });
  return [alice, bob];
}

/** A valid envelope to take apart: a session-text to a room the sender is not in (which would get 404002). */
function validEnvelope(): Record<string, unknown> & { jsongle: Record<string, unknown> } {
  return {
    id: randomUUID(),
    from: null,
    to: 'limits-room',
    jsongle: { action: 'session-text', namespace: 'message', description: { body: 'hi' } },
  };
}

function without(value: Record<string, unknown>, key: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).filter(([name]) => name !== key));
}

describe('malformed input after the hello', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer(),
    (started) => (server = started),
    clients,
  );

  async function helloed(uid = 'sender'): Promise<TestClient> {
    const client = await connectAs(server.wsUrl, uid);
    clients.push(client);
    return client;
  }

  test.each<[string, unknown]>([
    ['a string', 'hello'],
    ['a number', 42],
    ['an array', [{ id: 'x', to: 'y', jsongle: { action: 'session-text' } }]],
    ['null', null],
    ['an empty object', {}],
    ['an empty jsongle object', { id: 'x', to: 'y', jsongle: {} }],
    ['a string as jsongle', { id: 'x', to: 'y', jsongle: 'x' }],
    ['null as jsongle', { id: 'x', to: 'y', jsongle: null }],
    ['an array as jsongle', { id: 'x', to: 'y', jsongle: [] }],
    ['a number as jsongle.action', { id: 'x', to: 'y', jsongle: { action: 42 } }],
  ])('%s gets session-error 400002 and the connection stays up', async (_what, raw) => {
    const client = await helloed();
    client.emit(raw);
    expectSessionError(await client.next(), client.sid, 400002);
    await expectJoinWorks(client);
  });

  test.each<[string, () => unknown]>([
    ['a missing id', () => without(validEnvelope(), 'id')],
    ['an id over 128 characters', () => ({ ...validEnvelope(), id: 'i'.repeat(129) })],
    ['an id that is a number', () => ({ ...validEnvelope(), id: 12345 })],
    ['a missing to', () => without(validEnvelope(), 'to')],
    ['a number as to', () => ({ ...validEnvelope(), to: 7 })],
    ['a number as from', () => ({ ...validEnvelope(), from: 7 })],
    ['a description that is an array', () => ({ ...validEnvelope(), jsongle: { ...validEnvelope().jsongle, description: ['body'] } })],
    ['a description that is a string', () => ({ ...validEnvelope(), jsongle: { ...validEnvelope().jsongle, description: 'body' } })],
    ['a transaction that is an object', () => ({ ...validEnvelope(), jsongle: { ...validEnvelope().jsongle, transaction: { t: 1 } } })],
    ['a query that is a number', () => ({ ...validEnvelope(), jsongle: { ...validEnvelope().jsongle, query: 5 } })],
    ['an sid that is an object', () => ({ ...validEnvelope(), jsongle: { ...validEnvelope().jsongle, sid: { call: 1 } } })],
  ])('an envelope with %s gets session-error 400001 and the connection stays up', async (_what, make) => {
    const client = await helloed();
    client.emit(make());
    expectSessionError(await client.next(), client.sid, 400001);
    await expectJoinWorks(client);
  });

  test('an id of exactly 128 characters is valid (the refusal that follows names it as mid)', async () => {
    const client = await helloed();
    const id = 'i'.repeat(128);
    client.emit({ ...validEnvelope(), id });
    const description = expectSessionError(await client.next(), client.sid, 404002);
    expect(description.mid).toBe(id);
  });

  test('a burst of junk of every kind on one connection: one error each, then a join works', async () => {
    const client = await helloed();
    const junk: unknown[] = [
      '',
      0,
      true,
      [],
      null,
      {},
      { jsongle: {} },
      { jsongle: 'x' },
      without(validEnvelope(), 'id'),
      { ...validEnvelope(), id: 1 },
    ];
    for (const raw of junk) client.emit(raw);
    const codes: unknown[] = [];
    for (let i = 0; i < junk.length; i++) codes.push((await client.nextAction('session-error')).jsongle.description?.errorCode);
    expect(codes).toEqual([400002, 400002, 400002, 400002, 400002, 400002, 400002, 400002, 400001, 400001]);
    await expectJoinWorks(client);
  });
});

describe('protocol errors (§7)', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer(),
    (started) => (server = started),
    clients,
  );

  test('an unknown action gets session-error 405001', async () => {
    const client = await connectAs(server.wsUrl, 'alice');
    clients.push(client);
    client.send(SERVER_ID, { action: 'foo' });
    expectSessionError(await client.next(), client.sid, 405001);
    await expectJoinWorks(client);
  });

  test('an iq-set with an unknown query gets iq-error 404001 with its query and transaction', async () => {
    const client = await connectAs(server.wsUrl, 'alice');
    clients.push(client);
    const answer = await client.iq('room-destroy', { rid: 'r' });
    expect(answer.id).toMatch(UUID);
    expect(answer.from).toBe(SERVER_ID);
    expect(answer.to).toBe(client.sid);
    const { transaction, description } = answer.jsongle;
    expect(transaction).toMatch(UUID);
    expect(answer.jsongle).toEqual({
      action: 'iq-error',
      query: 'room-destroy',
      transaction,
      description: { errorCode: 404001, errorDetails: description?.errorDetails },
    });
    expect(typeof description?.errorDetails).toBe('string');
    expect(String(description?.errorDetails).length).toBeGreaterThan(0);
  });

  test('a message to a room one is not in gets session-error 404002 naming the message as mid', async () => {
    const client = await connectAs(server.wsUrl, 'alice');
    clients.push(client);
    const mid = client.send('nobody-here', { action: 'session-text', namespace: 'message', description: { body: 'hi' } });
    const description = expectSessionError(await client.next(), client.sid, 404002);
    expect(description.mid).toBe(mid);
  });

  test('a message to a room of two others gets 404002 and reaches neither of them', async () => {
    const [alice, bob] = await pairInRoom(server, 'private-pair');
    const eve = await connectAs(server.wsUrl, 'eve');
    clients.push(alice, bob, eve);
    const mid = eve.send('private-pair', { action: 'session-propose', namespace: 'call', sid: 'c1', initiator: 'eve', responder: 'bob' });
    const description = expectSessionError(await eve.next(), eve.sid, 404002);
    expect(description.mid).toBe(mid);
    await bob.expectNothing((m) => m.id === mid);
    await alice.expectNothing((m) => m.id === mid);
  });
});

describe('maxMessageBytes = 2048', () => {
  const LIMIT = 2048;
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ maxMessageBytes: String(LIMIT) }),
    (started) => (server = started),
    clients,
  );

  test('a 4 KB envelope gets session-error 413001, is not relayed, and the connection survives', async () => {
    const [alice, bob] = await pairInRoom(server, 'big-room');
    clients.push(alice, bob);
    const big = envelopeOfSize('big-room', 4096);
    alice.emit(big);
    expectSessionError(await nextWhileConnected(alice), alice.sid, 413001);
    await bob.expectNothing((m) => m.id === big.id);

    await expectJoinWorks(alice);
    const mid = alice.send('big-room', { action: 'session-text', namespace: 'message', description: { body: 'small' } });
    await expect(bob.nextAction('session-text')).resolves.toMatchObject({ id: mid, from: 'big-room', to: bob.sid });
  });

  test('an envelope just under the limit is relayed', async () => {
    const [alice, bob] = await pairInRoom(server, 'under-room');
    clients.push(alice, bob);
    const envelope = envelopeOfSize('under-room', LIMIT - 64);
    alice.emit(envelope);
    const relayed = await bob.nextAction('session-text');
    expect(relayed).toMatchObject({ id: envelope.id, from: 'under-room', to: bob.sid });
    const ack = await nextWhileConnected(alice);
    expect(ack.jsongle).toMatchObject({
      action: 'session-event',
      event: 'ack',
      description: { mid: envelope.id, type: 'server-received' },
    });
  });

  test('an envelope one byte over the limit gets 413001 and the connection survives', async () => {
    const client = await connectAs(server.wsUrl, 'edge');
    clients.push(client);
    client.emit(envelopeOfSize('edge-room', LIMIT + 1));
    expectSessionError(await nextWhileConnected(client), client.sid, 413001);
    await expectJoinWorks(client);
  });

  test('an envelope of exactly maxMessageBytes is not refused (§6: only a larger one is)', async () => {
    const [alice, bob] = await pairInRoom(server, 'exact-room');
    clients.push(alice, bob);
    const exact = envelopeOfSize('exact-room', LIMIT);
    alice.emit(exact);
    const answer = await nextWhileConnected(alice);
    expect(answer.jsongle).toMatchObject({ action: 'session-event', event: 'ack', description: { mid: exact.id } });
    await expect(bob.nextAction('session-text')).resolves.toMatchObject({ id: exact.id });
  });

  test('a stream of oversized envelopes gets one 413001 each and leaves the connection usable', async () => {
    const client = await connectAs(server.wsUrl, 'flooder');
    clients.push(client);
    for (let i = 0; i < 5; i++) client.emit(envelopeOfSize('anywhere', 10_000));
    for (let i = 0; i < 5; i++) expectSessionError(await nextWhileConnected(client), client.sid, 413001);
    await expectJoinWorks(client);
  });
});

describe('maxMessagesPerSecond = 5 (burst 10)', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ maxMessagesPerSecond: '5' }),
    (started) => (server = started),
    clients,
  );

  /** Sends one session-text and resolves with what the sender gets for it: its ack or a 429001. */
  async function sendOne(sender: TestClient, rid: string): Promise<{ mid: string; answer: Envelope }> {
    const mid = sender.send(rid, { action: 'session-text', namespace: 'message', description: { body: 'again' } });
    const answer = await sender.next(
      (m) => isSessionError(429001)(m) || (m.jsongle.action === 'session-event' && m.jsongle.description?.mid === mid),
    );
    return { mid, answer };
  }

  test('30 messages at once: the excess gets 429001, the rest is delivered, and the sender recovers', async () => {
    const [alice, bob] = await pairInRoom(server, 'busy-room');
    clients.push(alice, bob);

    const mids: string[] = [];
    for (let i = 0; i < 30; i++) {
      mids.push(alice.send('busy-room', { action: 'session-text', namespace: 'message', description: { body: `message ${i}` } }));
    }

    // Each of the 30 gets exactly one answer: a delivery receipt or a 429001.
    const acked: string[] = [];
    let refused = 0;
    for (let i = 0; i < 30; i++) {
      const answer = await alice.next(
        (m) => isSessionError(429001)(m) || (m.jsongle.action === 'session-event' && m.jsongle.event === 'ack'),
        DEFAULT_TIMEOUT_MS,
        `answer ${i + 1} of 30`,
      );
      if (answer.jsongle.action === 'session-error') {
        expectSessionError(answer, alice.sid, 429001);
        refused++;
      } else {
        acked.push(String(answer.jsongle.description?.mid));
      }
    }
    const delivered: string[] = [];
    for (let i = 0; i < acked.length; i++) delivered.push((await bob.nextAction('session-text')).id);
    await bob.expectNothing((m) => m.jsongle.action === 'session-text');
    await alice.expectNothing((m) => isSessionError(429001)(m) || m.jsongle.event === 'ack');

    expect(refused).toBeGreaterThan(0);
    expect(delivered.length).toBeGreaterThan(0);
    // Burst 10 (hello and join took 2 of it), plus what refills while the burst is handled.
    expect(delivered.length).toBeLessThanOrEqual(12);
    expect(delivered.length + refused).toBe(30);
    expect(delivered).toEqual(acked);
    // What passes is delivered in the order it was sent.
    const positions = delivered.map((mid) => mids.indexOf(mid));
    expect(positions.every((position) => position >= 0)).toBe(true);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));

    // The budget refills at 5 per second: within about a second, the sender's messages flow again.
    const deadline = Date.now() + 1500;
    let recovered: { mid: string; answer: Envelope } | undefined;
    while (Date.now() < deadline) {
      const attempt = await sendOne(alice, 'busy-room');
      if (attempt.answer.jsongle.action === 'session-event') {
        recovered = attempt;
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(recovered).toBeDefined();
    await expect(bob.nextAction('session-text')).resolves.toMatchObject({ id: recovered?.mid, from: 'busy-room', to: bob.sid });
  });

  test('messages within the burst are never refused', async () => {
    const [alice, bob] = await pairInRoom(server, 'calm-room');
    clients.push(alice, bob);
    for (let i = 0; i < 6; i++) {
      const { mid, answer } = await sendOne(alice, 'calm-room');
      expect(answer.jsongle).toMatchObject({ action: 'session-event', event: 'ack', description: { mid } });
      await expect(bob.nextAction('session-text')).resolves.toMatchObject({ id: mid });
    }
  });
});
