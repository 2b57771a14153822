import { io } from 'socket.io-client';
import type { Envelope } from '../src/protocol/envelope';
import { connect, DEFAULT_TIMEOUT_MS, refusal, TestClient } from './helpers/client';
import { startServer, withServer, type TestServer } from './helpers/server';

/** PROTOCOL.md §2: the gate in front of every connection (token, capacity, per-address limit, identity). */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type ConnectError = Error & { data?: unknown };

/**
 * Opens a connection with exactly this `auth` (`undefined`: no auth at all, which the helpers
 * cannot express) and resolves with the connect_error it gets; rejects if it is accepted.
 */
function refusalWithAuth(url: string, auth: Record<string, unknown> | undefined): Promise<ConnectError> {
  const socket = io(url, {
    transports: ['websocket'],
    rejectUnauthorized: false,
    reconnection: false,
    forceNew: true,
    timeout: DEFAULT_TIMEOUT_MS,
    ...(auth === undefined ? {} : { auth }),
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => {
      socket.close();
      reject(new Error('the connection was accepted'));
    });
    socket.once('connect_error', (error: ConnectError) => {
      socket.close();
      resolve(error);
    });
  });
}

/** Opens a connection with exactly this `auth` and resolves once it is accepted. */
function connectWithAuth(url: string, auth: Record<string, unknown> | undefined): Promise<TestClient> {
  const socket = io(url, {
    transports: ['websocket'],
    rejectUnauthorized: false,
    reconnection: false,
    forceNew: true,
    timeout: DEFAULT_TIMEOUT_MS,
    ...(auth === undefined ? {} : { auth }),
  });
  const client = new TestClient(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(client));
    socket.once('connect_error', (error) => {
      socket.close();
      reject(error);
    });
  });
}

/** Asserts the shape every refusal has: the reason as message, `{ errorCode, errorDetails }` as data. */
function expectRefusal(error: ConnectError, message: string, errorCode: number): void {
  expect(error.message).toBe(message);
  const data = error.data as Record<string, unknown> | undefined;
  expect(data).toBeDefined();
  expect(Object.keys(data ?? {}).sort()).toEqual(['errorCode', 'errorDetails']);
  expect(data?.errorCode).toBe(errorCode);
  expect(typeof data?.errorDetails).toBe('string');
  expect(String(data?.errorDetails).length).toBeGreaterThan(0);
}

async function stats(server: TestServer): Promise<Record<string, number>> {
  const response = await server.rest().get('/stats').expect(200);
  return response.body as Record<string, number>;
}

/** Retries `attempt` until it succeeds or `timeoutMs` has passed (a bounded poll, not a sleep). */
async function eventually<T>(attempt: () => Promise<T>, timeoutMs = DEFAULT_TIMEOUT_MS, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() >= deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The server's session-hello request, the first thing an accepted connection receives. */
function helloRequest(client: TestClient): Promise<Envelope> {
  return client.nextAction('iq-get', { query: 'session-hello' });
}

describe('the application token, when appToken is set', () => {
  const TOKEN = 'app-token-0123456789';
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ appToken: TOKEN }),
    (started) => (server = started),
    clients,
  );

  test.each<[string, Record<string, unknown> | undefined]>([
    ['a wrong token of the same length', { appToken: 'app-token-9876543210' }],
    ['a token of a different length (shorter)', { appToken: 'app' }],
    ['a token of a different length (the right one plus a character)', { appToken: `${TOKEN}x` }],
    ['an empty token', { appToken: '' }],
    ['a non-string token', { appToken: 12345 }],
    ['an auth object without appToken', {}],
    ['no auth at all', undefined],
  ])('%s is refused with connect_error unauthorized / 401001', async (_what, auth) => {
    expectRefusal(await refusalWithAuth(server.wsUrl, auth), 'unauthorized', 401001);
  });

  test('the right token connects and gets its session-hello', async () => {
    const client = await connect(server.wsUrl, { appToken: TOKEN });
    clients.push(client);
    expect(client.socket.connected).toBe(true);
    const request = await helloRequest(client);
    expect(request.to).toMatch(UUID);
  });

  test('refused connections are never counted in users_count / users_total', async () => {
    const before = await stats(server);
    for (const appToken of ['wrong', '', `${TOKEN}${TOKEN}`]) {
      expectRefusal(await refusal(server.wsUrl, { appToken }), 'unauthorized', 401001);
    }
    const after = await stats(server);
    expect(after.users_total).toBe(before.users_total);
    expect(after.users_count).toBe(before.users_count);
  });
});

describe('an open server, when appToken is empty', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ appToken: '' }),
    (started) => (server = started),
    clients,
  );

  test.each<[string, Record<string, unknown> | undefined]>([
    ['any token', { appToken: 'whatever-the-client-says' }],
    ['an empty token', { appToken: '' }],
    ['a non-string token', { appToken: 42 }],
    ['no auth at all', undefined],
  ])('%s connects and gets its session-hello', async (_what, auth) => {
    const client = await connectWithAuth(server.wsUrl, auth);
    clients.push(client);
    const request = await helloRequest(client);
    expect(request.to).toMatch(UUID);
  });
});

describe('maxConcurrentUsers = 2', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ maxConcurrentUsers: '2' }),
    (started) => (server = started),
    clients,
  );

  test('the third connection gets server-full / 503001, is not counted, and a seat freed by a close is given again', async () => {
    const first = await connect(server.wsUrl);
    const second = await connect(server.wsUrl);
    clients.push(first, second);

    expectRefusal(await refusal(server.wsUrl), 'server-full', 503001);
    expectRefusal(await refusal(server.wsUrl), 'server-full', 503001);
    await expect(stats(server)).resolves.toMatchObject({ users_count: 2, users_total: 2 });

    // The two accepted ones are untouched by the refusals.
    expect(first.socket.connected).toBe(true);
    expect(second.socket.connected).toBe(true);

    first.close();
    // The seat comes back once the server has handled the disconnect: retry, bounded.
    const third = await eventually(() => connect(server.wsUrl));
    clients.push(third);
    await helloRequest(third);
    // Refused attempts while the seat was still taken are not counted either.
    await expect(stats(server)).resolves.toMatchObject({ users_count: 2, users_total: 3 });

    expectRefusal(await refusal(server.wsUrl), 'server-full', 503001);
  });
});

describe('maxConnectionsPerAddress = 3', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ maxConnectionsPerAddress: '3' }),
    (started) => (server = started),
    clients,
  );

  test('the 4th connection from 127.0.0.1 gets too-many-connections / 429002; a close frees a slot', async () => {
    for (let i = 0; i < 3; i++) clients.push(await connect(server.wsUrl));

    expectRefusal(await refusal(server.wsUrl), 'too-many-connections', 429002);
    await expect(stats(server)).resolves.toMatchObject({ users_count: 3, users_total: 3 });

    clients.shift()?.close();
    const fourth = await eventually(() => connect(server.wsUrl));
    clients.push(fourth);
    await helloRequest(fourth);
    expectRefusal(await refusal(server.wsUrl), 'too-many-connections', 429002);
  });
});

describe('refused connections hold no slot', () => {
  const TOKEN = 'gate-token';
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ appToken: TOKEN, maxConcurrentUsers: '2', maxConnectionsPerAddress: '3' }),
    (started) => (server = started),
    clients,
  );

  test('connections refused as unauthorized or server-full do not use up the per-address allowance', async () => {
    for (let i = 0; i < 5; i++) expectRefusal(await refusal(server.wsUrl, { appToken: 'wrong' }), 'unauthorized', 401001);
    clients.push(await connect(server.wsUrl, { appToken: TOKEN }), await connect(server.wsUrl, { appToken: TOKEN }));
    for (let i = 0; i < 5; i++) expectRefusal(await refusal(server.wsUrl, { appToken: TOKEN }), 'server-full', 503001);

    // Two open from this address, limit 3: once a seat is free the next one must be accepted,
    // which it would not be if the refusals above had been counted against the address.
    clients.shift()?.close();
    clients.push(await eventually(() => connect(server.wsUrl, { appToken: TOKEN })));
    await expect(stats(server)).resolves.toMatchObject({ users_count: 2, users_total: 3 });
  });
});

describe('session identity', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer(),
    (started) => (server = started),
    clients,
  );

  test('each accepted connection gets a distinct UUID, used as `to` in everything the server sends it', async () => {
    const sids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const client = await connect(server.wsUrl);
      clients.push(client);
      const request = await helloRequest(client);
      expect(request.to).toMatch(UUID);
      expect(request.to).not.toBe(request.id);
      sids.push(request.to);

      // The same uid on every connection: the identity is the connection's, not the user's.
      client.send(request.from, {
        action: 'iq-result',
        query: 'session-hello',
        transaction: request.jsongle.transaction,
        description: { uid: 'same-user' },
      });
      const ack = await client.nextAction('ack');
      expect(ack.to).toBe(request.to);
      const joined = await client.join(`identity-room-${i}`);
      expect(joined.to).toBe(request.to);
      client.send('identity-not-a-member', { action: 'session-text' });
      const error = await client.nextAction('session-error');
      expect(error.to).toBe(request.to);
    }
    expect(new Set(sids).size).toBe(sids.length);
  });
});
