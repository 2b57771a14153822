import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { eventually } from './fixtures/droppable-client';
import { connectAs } from './helpers/client';
import { redisAvailable, startRedis, type TestRedis } from './helpers/redis';
import { startServer, type TestServer } from './helpers/server';

/**
 * A failure that is not the client's fault (issue #5): here, shared state corrupted behind the
 * server's back, so reading a room throws. The message gets a generic 500001, the failure is
 * logged with the message id, and the connection and the process carry on.
 */
const describeWithRedis = redisAvailable() ? describe : describe.skip;

describeWithRedis('a handler that throws', () => {
  let redis: TestRedis;
  let server: TestServer;

  beforeAll(async () => {
    redis = await startRedis();
    server = await startServer({ redisUrl: redis.url });
  });
  afterAll(async () => {
    await server.close();
    await redis.stop();
  });

  test('answers 500001, logs the message id, and the connection goes on', async () => {
    const alice = await connectAs(server.wsUrl, 'alice');
    try {
      await alice.join('corrupted');
      const raw = new Redis(redis.url);
      await raw.hset('jsongle:room:corrupted', 'm:intruder', '1\t2026-11-29T00:00:00.000Z\t{not json');
      raw.disconnect();

      const mid = alice.send('corrupted', { action: 'session-text', description: { body: 'hello?' } });
      const error = await alice.nextAction('session-error');
      expect(error.jsongle.description).toEqual({ errorCode: 500001, errorDetails: expect.any(String) as unknown, mid });

      // The same connection still works, and so does the process.
      await expect(alice.join('healthy')).resolves.toMatchObject({ jsongle: { action: 'iq-result' } });
      await server.rest().get('/ping').expect(200);

      // The file is written asynchronously: poll it, bounded.
      await eventually(async () => {
        const log = readdirSync(server.logDir)
          .filter((name) => name.endsWith('.log'))
          .map((name) => readFileSync(path.join(server.logDir, name), 'utf8'))
          .join('');
        const line = log.split('\n').find((entry) => entry.includes('"handler failed"'));
        expect(JSON.parse(String(line))).toMatchObject({ level: 'error', mid, action: 'session-text', session: alice.sid });
      });
    } finally {
      alice.close();
    }
  });
});
