import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import winston from 'winston';
import { loadConfig } from '../src/config';
import { createLogging } from '../src/observability/logger';
import { createServer } from '../src/server';
import { connectAs, refusal, type TestClient } from './helpers/client';
import { redisAvailable, startRedis, type TestRedis } from './helpers/redis';
import { PROJECT_ROOT, startServer, type TestServer } from './helpers/server';

/** GET /tests (PROTOCOL.md §8): a real round trip through the signaling side that leaves no trace (§9). */

// Jest's asymmetric matchers are typed `any`; held as `unknown` they go in expected objects safely.
const A_DURATION: unknown = expect.any(Number);

const PASSED = {
  status: 'ok',
  checks: ['connect', 'session-hello', 'session-join', 'session-leave'].map((name) => ({ name, ok: true, durationMs: A_DURATION })),
  durationMs: A_DURATION,
};

type Stats = Record<string, number>;

const selfTest = (server: Pick<TestServer, 'rest'>) => server.rest().get('/tests');
const stats = async (server: Pick<TestServer, 'rest'>) => (await server.rest().get('/stats').expect(200)).body as Stats;

/** Runs GET /tests and checks it passed and changed no business metric and no registry count. */
async function expectCleanPass(server: TestServer): Promise<void> {
  const before = await stats(server);
  const countsBefore = await server.server.registry.counts();
  const answer = await selfTest(server).expect(200).expect('content-type', /json/);
  expect(answer.body).toEqual(PASSED);
  expect(await stats(server)).toEqual(before);
  expect(await server.server.registry.counts()).toEqual(countsBefore);
}

/**
 * Like helpers/server.ts's startServer, but with the console log silenced: the Redis outage below
 * makes the server log errors on purpose (they still go to its log file).
 */
async function startQuietServer(settings: Record<string, string>): Promise<TestServer> {
  const logDir = mkdtempSync(path.join(tmpdir(), 'jsongle-test-'));
  const config = loadConfig(
    {
      wsPort: '0',
      restPort: '0',
      logDefaultLevel: 'error',
      logPath: path.join(logDir, 'jsongle-server.log'),
      maxConcurrentUsers: '1000',
      ...settings,
    },
    PROJECT_ROOT,
  );
  const logging = createLogging(config);
  for (const transport of logging.logger.transports) if (transport instanceof winston.transports.Console) transport.silent = true;
  const server = await createServer(config, { logging });
  const { wsPort, restPort } = await server.listen('127.0.0.1');
  const restUrl = `https://127.0.0.1:${restPort}`;
  return {
    server,
    config,
    wsUrl: `https://127.0.0.1:${wsPort}`,
    restUrl,
    rest: () => request.agent(restUrl).disableTLSCerts(),
    logDir,
    async close() {
      await server.close();
      await logging.close();
      rmSync(logDir, { recursive: true, force: true });
    },
  };
}

describe('GET /tests (PROTOCOL.md §8)', () => {
  const servers: TestServer[] = [];
  const clients: TestClient[] = [];
  const start = async (settings: Record<string, string> = {}) => {
    const server = await startServer(settings);
    servers.push(server);
    return server;
  };

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  test('answers 200 { status: ok, checks: [connect, session-hello, session-join, session-leave], durationMs } and leaves no trace', async () => {
    const server = await start();
    await expectCleanPass(server);
    // Twice in a row, and never counted as a user or a conference.
    await expectCleanPass(server);
    await expect(stats(server)).resolves.toMatchObject({
      users_count: 0,
      users_total: 0,
      conferences_count: 0,
      conferences_total: 0,
      duration_total: 0,
      recv_total: 0,
      sent_total: 0,
    });
  });

  test('runs beside real users without their noticing, and three at once all pass', async () => {
    const server = await start();
    const alice = await connectAs(server.wsUrl, 'alice');
    const bob = await connectAs(server.wsUrl, 'bob');
    clients.push(alice, bob);
    await alice.join('busy-room');
    await bob.join('busy-room');
    await alice.nextAction('session-event', { event: 'joined' });

    await expectCleanPass(server);
    const before = await stats(server);
    const answers = await Promise.all([selfTest(server), selfTest(server), selfTest(server)]);
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(answer.body).toEqual(PASSED);
    }
    expect(await stats(server)).toEqual(before);
    await expect(server.server.registry.counts()).resolves.toEqual({ connections: 2, rooms: 1 });
    await Promise.all([alice.expectNothing(), bob.expectNothing()]);
  });

  test('passes over plain HTTP (useHTTPS=false, behind a TLS proxy)', async () => {
    const server = await start({ useHTTPS: 'false' });
    expect(server.restUrl.startsWith('http://')).toBe(true);
    await expectCleanPass(server);
  });

  test('passes with appToken set, while a client without the token is refused', async () => {
    const server = await start({ appToken: 'app-secret' });
    const refused = await refusal(server.wsUrl, { appToken: 'wrong' });
    expect(refused.message).toBe('unauthorized');
    await expectCleanPass(server);
    clients.push(await connectAs(server.wsUrl, 'alice', { appToken: 'app-secret' }));
    await expectCleanPass(server);
  });

  test('passes when maxConcurrentUsers is reached, and takes no seat', async () => {
    const server = await start({ maxConcurrentUsers: '2' });
    const alice = await connectAs(server.wsUrl, 'alice');
    const bob = await connectAs(server.wsUrl, 'bob');
    clients.push(alice, bob);
    expect((await refusal(server.wsUrl)).message).toBe('server-full');

    await expectCleanPass(server);

    // Still full after it: the check neither took nor gave back a seat.
    expect((await refusal(server.wsUrl)).message).toBe('server-full');
    alice.close();
    const carol = await (async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await connectAs(server.wsUrl, 'carol');
        } catch (error) {
          // alice's seat comes back once the server has seen her go.
          if (attempt >= 50 || (error as Error).message !== 'server-full') throw error;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
    })();
    clients.push(carol);
    expect((await refusal(server.wsUrl)).message).toBe('server-full');
  });

  test('passes when maxConnectionsPerAddress is reached', async () => {
    const server = await start({ maxConnectionsPerAddress: '1' });
    clients.push(await connectAs(server.wsUrl, 'alice'));
    expect((await refusal(server.wsUrl)).message).toBe('too-many-connections');
    await expectCleanPass(server);
    expect((await refusal(server.wsUrl)).message).toBe('too-many-connections');
  });

  test('answers 503 with a failed connect check once the Socket.IO side is closed while REST is up', async () => {
    const server = await start();
    await server.server.closeSignaling();
    const answer = await selfTest(server).expect(503);
    expect(answer.body).toEqual({
      status: 'failed',
      checks: [{ name: 'connect', ok: false, durationMs: A_DURATION, error: expect.any(String) as unknown }],
      durationMs: A_DURATION,
    });
  });
});

const describeWithRedis = redisAvailable() ? describe : describe.skip;

describeWithRedis('GET /tests when the shared state is down (PROTOCOL.md §8)', () => {
  let redis: TestRedis;
  let server: TestServer;

  beforeAll(async () => {
    redis = await startRedis();
    server = await startQuietServer({ redisUrl: redis.url, nodeHeartbeatMs: '300' });
  });
  afterAll(async () => {
    await server.close();
    await redis.stop();
  });

  test('answers 503 with the failed check while Redis is down, and 200 again once it is back', async () => {
    await expectCleanPass(server);
    const before = await stats(server);

    await redis.stop();
    const failed = await selfTest(server).expect(503).expect('content-type', /json/);
    expect(failed.body).toEqual({
      status: 'failed',
      checks: [
        { name: 'connect', ok: true, durationMs: A_DURATION },
        // The hello records the session in the registry, which answered 503002 (shared state unreachable).
        { name: 'session-hello', ok: false, durationMs: A_DURATION, error: expect.stringContaining('503002') as unknown },
      ],
      durationMs: A_DURATION,
    });
    expect(await stats(server)).toEqual(before);

    await redis.start();
    // ioredis reconnects on its own schedule (at most 2 s apart): poll, bounded.
    const deadline = Date.now() + 10000;
    let answer = await selfTest(server);
    while (answer.status !== 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      answer = await selfTest(server);
    }
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual(PASSED);
    expect(await stats(server)).toEqual(before);
  });
});
