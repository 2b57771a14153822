import { connectAs, type TestClient } from './helpers/client';
import { startServer, withServer, type TestServer } from './helpers/server';

const BUSINESS_METRICS = {
  users_count: 'gauge',
  users_total: 'counter',
  conferences_count: 'gauge',
  conferences_total: 'counter',
  duration_total: 'counter',
  recv_total: 'counter',
  sent_total: 'counter',
} as const;

type Stats = Record<keyof typeof BUSINESS_METRICS, number>;

/** Polls `read` until `done` holds, for at most `timeoutMs`; resolves with the last value read. */
async function pollUntil<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!done(value) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    value = await read();
  }
  return value;
}

describe('metrics', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  const stats = async (): Promise<Stats> => (await server.rest().get('/stats').expect(200)).body as Stats;

  withServer(
    () => startServer(),
    (started) => (server = started),
    clients,
  );

  test("GET /metrics is Prometheus text with the registry's content type, the seven business metrics and Node's", async () => {
    const res = await server.rest().get('/metrics').expect(200);
    expect(res.headers['content-type']).toBe(server.server.metrics.registry.contentType);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    for (const [name, type] of Object.entries(BUSINESS_METRICS)) {
      expect(res.text).toMatch(new RegExp(`^# TYPE ${name} ${type}$`, 'm'));
      expect(res.text).toMatch(new RegExp(`^${name} \\d`, 'm'));
    }
    expect(res.text).toMatch(/^(process_cpu_user_seconds_total|nodejs_heap_size_used_bytes) /m);
  });

  test('GET /stats is exactly the seven business metrics, as numbers', async () => {
    const res = await server
      .rest()
      .get('/stats')
      .expect(200)
      .expect('content-type', /application\/json/);
    const body = res.body as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(Object.keys(BUSINESS_METRICS).sort());
    for (const value of Object.values(body)) expect(typeof value).toBe('number');
  });

  test('users, duration and bytes follow two connections from open to close', async () => {
    const before = await stats();
    expect(before).toMatchObject({ users_count: 0, users_total: 0, duration_total: 0 });

    clients.push(await connectAs(server.wsUrl, 'alice'), await connectAs(server.wsUrl, 'bob'));
    const open = await stats();
    expect(open).toMatchObject({ users_count: 2, users_total: 2 });
    const text = (await server.rest().get('/metrics').expect(200)).text;
    expect(text).toMatch(/^users_count 2$/m);
    expect(text).toMatch(/^users_total 2$/m);

    for (const client of clients.splice(0)) client.close();
    const closed = await pollUntil(stats, (s) => s.users_count === 0);
    expect(closed.users_count).toBe(0);
    expect(closed.users_total).toBe(2);
    expect(closed.duration_total).toBeGreaterThan(0);
    // Two connections last well under a minute each.
    expect(closed.duration_total).toBeLessThan(1);
    expect(closed.recv_total).toBeGreaterThan(0);
    expect(closed.sent_total).toBeGreaterThan(0);
  });

  test('a room shows in conferences_count while it exists and in conferences_total after', async () => {
    const before = await stats();
    const alice = await connectAs(server.wsUrl, 'alice');
    clients.push(alice);
    expect((await alice.join('metrics-room')).jsongle.action).toBe('iq-result');
    expect(await stats()).toMatchObject({
      conferences_count: before.conferences_count + 1,
      conferences_total: before.conferences_total + 1,
    });
    expect((await alice.leave('metrics-room')).jsongle.action).toBe('iq-result');
    expect(await stats()).toMatchObject({ conferences_count: before.conferences_count, conferences_total: before.conferences_total + 1 });
  });

  test('the self-check GET /tests leaves no trace in the business metrics', async () => {
    const before = await stats();
    const res = await server.rest().get('/tests');
    expect(res.status).toBe(200);
    // Its socket closes after the answer: give the server the time to see the disconnect.
    const after = await pollUntil(stats, (s) => s.users_count === before.users_count, 2000);
    expect(after).toEqual(before);
  });
});
