import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { io } from 'socket.io-client';
import type { Envelope } from '../src/protocol/envelope';
import { connect, connectAs, DEFAULT_TIMEOUT_MS, TestClient } from './helpers/client';
import { PROJECT_ROOT, startServer, withServer, type TestServer } from './helpers/server';

/** PROTOCOL.md §3: the session-hello that opens every connection. */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const SERVER_ID = 'jsongle-server';

const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string; description: string };

/** The server's session-hello request, the first thing an accepted connection receives. */
function helloRequest(client: TestClient): Promise<Envelope> {
  return client.nextAction('iq-get', { query: 'session-hello' });
}

/** Sends an iq-result session-hello with exactly this transaction and description. */
function answerHello(client: TestClient, transaction: unknown, description: unknown): void {
  client.emit({
    id: randomUUID(),
    from: null,
    to: SERVER_ID,
    jsongle: { action: 'iq-result', query: 'session-hello', transaction, description },
  });
}

/** Checks the envelope fields every server-made envelope has (§1). */
function expectServerEnvelope(message: Envelope, to: string): void {
  expect(message.id).toMatch(UUID);
  expect(message.from).toBe(SERVER_ID);
  expect(message.to).toBe(to);
}

function expectAck(message: Envelope, to: string, status: 'success' | 'failed', transaction: unknown): void {
  expectServerEnvelope(message, to);
  // A successful hello's ack carries the resume token for a reconnect (issue #9).
  const description =
    status === 'success' ? { description: { resume: expect.stringMatching(/^[\w-]{32}$/) as unknown, reconnectGraceMs: 0 } } : {};
  expect(message.jsongle).toEqual({ action: 'ack', status, transaction, ...description });
}

function expectSessionError(message: Envelope, to: string, errorCode: number): void {
  expectServerEnvelope(message, to);
  expect(message.jsongle.action).toBe('session-error');
  const description = message.jsongle.description ?? {};
  expect(description.errorCode).toBe(errorCode);
  expect(typeof description.errorDetails).toBe('string');
  expect(String(description.errorDetails).length).toBeGreaterThan(0);
}

/** The next envelope in arrival order, whatever it is: asserts what comes first. */
function nextInOrder(client: TestClient): Promise<Envelope> {
  return client.next();
}

describe('session-hello', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer(),
    (started) => (server = started),
    clients,
  );

  async function open(): Promise<{ client: TestClient; request: Envelope }> {
    const client = await connect(server.wsUrl);
    clients.push(client);
    const request = await helloRequest(client);
    client.sid = request.to;
    return { client, request };
  }

  test('the server opens with an iq-get session-hello describing itself and the connection time', async () => {
    const before = Date.now();
    const client = await connect(server.wsUrl);
    clients.push(client);
    const request = await nextInOrder(client);
    const after = Date.now();

    expect(Object.keys(request).sort()).toEqual(['from', 'id', 'jsongle', 'to']);
    expect(request.to).toMatch(UUID);
    expectServerEnvelope(request, request.to);
    const { transaction, description } = request.jsongle;
    expect(transaction).toMatch(UUID);
    expect(request.jsongle).toEqual({
      action: 'iq-get',
      query: 'session-hello',
      transaction,
      description: { version: pkg.version, sn: SERVER_ID, info: pkg.description, connected: description?.connected },
    });
    const connected = String(description?.connected);
    expect(connected).toMatch(ISO_TIME);
    expect(new Date(connected).toJSON()).toBe(connected);
    expect(Date.parse(connected)).toBeGreaterThanOrEqual(before - 5);
    expect(Date.parse(connected)).toBeLessThanOrEqual(after + 5);
  });

  test('each connection gets its own hello transaction', async () => {
    const first = await open();
    const second = await open();
    expect(first.request.jsongle.transaction).not.toBe(second.request.jsongle.transaction);
    expect(first.request.id).not.toBe(second.request.id);
  });

  test('a good iq-result gets ack success with the transaction, and the member carries uid and dn', async () => {
    const { client, request } = await open();
    const transaction = request.jsongle.transaction;
    answerHello(client, transaction, { uid: 'alice', dn: 'Alice A.' });
    expectAck(await nextInOrder(client), request.to, 'success', transaction);

    const bob = await connectAs(server.wsUrl, 'bob');
    clients.push(bob);
    await client.join('hello-member-room');
    const joined = await bob.join('hello-member-room');
    expect(joined.jsongle.description?.members).toEqual([{ sid: request.to, uid: 'alice', dn: 'Alice A.' }]);
  });

  test('a uid and a dn of exactly 256 characters are accepted', async () => {
    const { client, request } = await open();
    answerHello(client, request.jsongle.transaction, { uid: 'u'.repeat(256), dn: 'd'.repeat(256) });
    expectAck(await nextInOrder(client), request.to, 'success', request.jsongle.transaction);
  });

  test.each<[string, unknown]>([
    ['a missing uid', { dn: 'Nobody' }],
    ['an empty uid', { uid: '' }],
    ['a uid over 256 characters', { uid: 'u'.repeat(257) }],
    ['a non-string uid', { uid: 42 }],
    ['a non-string dn', { uid: 'alice', dn: 42 }],
    ['a dn over 256 characters', { uid: 'alice', dn: 'd'.repeat(257) }],
    ['no description', undefined],
  ])('%s gets ack failed then session-error 400001, and the client can then succeed', async (_what, description) => {
    const { client, request } = await open();
    const transaction = request.jsongle.transaction;
    answerHello(client, transaction, description);
    expectAck(await nextInOrder(client), request.to, 'failed', transaction);
    expectSessionError(await nextInOrder(client), request.to, 400001);

    answerHello(client, transaction, { uid: 'alice' });
    expectAck(await nextInOrder(client), request.to, 'success', transaction);
    const joined = await client.join('hello-retry-room');
    expect(joined.jsongle).toMatchObject({
      action: 'iq-result',
      query: 'session-join',
      description: { rid: 'hello-retry-room', members: [] },
    });
  });

  test.each<[string, unknown]>([
    ['another uuid', randomUUID()],
    ['a missing transaction', undefined],
  ])('a wrong transaction (%s) gets ack failed then session-error 400001, and the client can then succeed', async (_what, wrong) => {
    const { client, request } = await open();
    answerHello(client, wrong, { uid: 'alice' });
    expectAck(await nextInOrder(client), request.to, 'failed', wrong);
    expectSessionError(await nextInOrder(client), request.to, 400001);

    answerHello(client, request.jsongle.transaction, { uid: 'alice' });
    expectAck(await nextInOrder(client), request.to, 'success', request.jsongle.transaction);
    await expect(client.join('hello-transaction-room')).resolves.toMatchObject({ jsongle: { action: 'iq-result' } });
  });

  test.each<[string, (client: TestClient) => string]>([
    [
      'an iq-set session-join',
      (client) =>
        client.send(SERVER_ID, {
          action: 'iq-set',
          query: 'session-join',
          namespace: 'room',
          transaction: randomUUID(),
          description: { rid: 'before-hello-room' },
        }),
    ],
    [
      'a relayed action (session-text)',
      (client) => client.send('before-hello-room', { action: 'session-text', description: { body: 'hi' } }),
    ],
    ['a relayed call action (session-propose)', (client) => client.send('before-hello-room', { action: 'session-propose', sid: 'c1' })],
    ['an unknown action', (client) => client.send(SERVER_ID, { action: 'foo' })],
    ['session-metrics', (client) => client.send(SERVER_ID, { action: 'session-metrics', description: { duration: 3 } })],
  ])('before the hello, %s gets session-error 403002 and is otherwise ignored', async (_what, sendIt) => {
    const { client, request } = await open();
    sendIt(client);
    expectSessionError(await nextInOrder(client), request.to, 403002);

    // Ignored: the early join made no one a member of the room, so a newcomer finds it empty.
    const witness = await connectAs(server.wsUrl, 'witness');
    clients.push(witness);
    const joined = await witness.join('before-hello-room');
    expect(joined.jsongle.description?.members).toEqual([]);
    await witness.leave('before-hello-room');

    // The hello still works afterwards.
    answerHello(client, request.jsongle.transaction, { uid: 'late' });
    expectAck(await nextInOrder(client), request.to, 'success', request.jsongle.transaction);
  });

  test('a second hello after a successful one gets ack failed and session-error 409001; the identity stays', async () => {
    const { client, request } = await open();
    const transaction = request.jsongle.transaction;
    answerHello(client, transaction, { uid: 'alice', dn: 'Alice' });
    expectAck(await nextInOrder(client), request.to, 'success', transaction);

    answerHello(client, transaction, { uid: 'mallory', dn: 'Mallory' });
    expectAck(await nextInOrder(client), request.to, 'failed', transaction);
    expectSessionError(await nextInOrder(client), request.to, 409001);

    await client.join('second-hello-room');
    const bob = await connectAs(server.wsUrl, 'bob');
    clients.push(bob);
    const joined = await bob.join('second-hello-room');
    expect(joined.jsongle.description?.members).toEqual([{ sid: request.to, uid: 'alice', dn: 'Alice' }]);
  });

  test('several connections with the same uid are each their own member', async () => {
    const phone = await connectAs(server.wsUrl, 'carol', { dn: 'Carol (phone)' });
    const laptop = await connectAs(server.wsUrl, 'carol', { dn: 'Carol (laptop)' });
    clients.push(phone, laptop);
    expect(phone.sid).not.toBe(laptop.sid);

    const first = await phone.join('same-uid-room');
    expect(first.jsongle.description?.members).toEqual([]);
    const second = await laptop.join('same-uid-room');
    expect(second.jsongle).toMatchObject({ action: 'iq-result', query: 'session-join' });
    expect(second.jsongle.description?.members).toEqual([{ sid: phone.sid, uid: 'carol', dn: 'Carol (phone)' }]);
    const joined = await phone.nextAction('session-event', { event: 'joined' });
    expect(joined.to).toBe(phone.sid);
    expect(joined.jsongle.description).toEqual({ rid: 'same-uid-room', member: { sid: laptop.sid, uid: 'carol', dn: 'Carol (laptop)' } });

    // A message from one device reaches the other one.
    const mid = laptop.send('same-uid-room', { action: 'session-text', namespace: 'message', description: { body: 'to myself' } });
    const text = await phone.nextAction('session-text');
    expect(text).toMatchObject({ id: mid, from: 'same-uid-room', to: phone.sid });

    // One device leaving leaves the other in the room, and says which device left.
    laptop.close();
    const left = await phone.nextAction('session-event', { event: 'left' });
    expect(left.jsongle.description).toEqual({ rid: 'same-uid-room', member: { sid: laptop.sid, uid: 'carol', dn: 'Carol (laptop)' } });
  });
});

describe('helloTimeoutMs = 300', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ helloTimeoutMs: '300' }),
    (started) => (server = started),
    clients,
  );

  /**
   * Opens a connection whose `disconnect` is listened to from the start (so that it cannot be
   * missed) and resolves with the client and a promise of the disconnect reason, bounded.
   */
  async function openWatched(): Promise<{ client: TestClient; gone: Promise<string> }> {
    const socket = io(server.wsUrl, {
      transports: ['websocket'],
      auth: { appToken: '' },
      rejectUnauthorized: false,
      reconnection: false,
      forceNew: true,
      timeout: DEFAULT_TIMEOUT_MS,
    });
    const client = new TestClient(socket);
    clients.push(client);
    const gone = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not disconnected within ${DEFAULT_TIMEOUT_MS} ms`)), DEFAULT_TIMEOUT_MS);
      socket.once('disconnect', (reason) => {
        clearTimeout(timer);
        resolve(reason);
      });
    });
    // Keeps a rejection seen before the test awaits it from counting as unhandled.
    gone.catch(() => undefined);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    return { client, gone };
  }

  test('a client that never answers the hello is disconnected by the server', async () => {
    const startedAt = Date.now();
    const { client, gone } = await openWatched();
    await helloRequest(client);
    await expect(gone).resolves.toBe('io server disconnect');
    // Not before its time: the server's timer started after this connection was opened.
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(290);
  });

  test('a client whose hello answers all failed is disconnected too', async () => {
    const { client, gone } = await openWatched();
    const request = await helloRequest(client);
    answerHello(client, request.jsongle.transaction, { uid: '' });
    expectAck(await client.nextAction('ack'), request.to, 'failed', request.jsongle.transaction);
    await expect(gone).resolves.toBe('io server disconnect');
  });

  test('a client that completed its hello in time stays connected past the timeout', async () => {
    const client = await connectAs(server.wsUrl, 'punctual');
    clients.push(client);
    await client.expectNothing(() => true, 500);
    expect(client.socket.connected).toBe(true);
    await expect(client.join('punctual-room')).resolves.toMatchObject({ jsongle: { action: 'iq-result' } });
  });
});
