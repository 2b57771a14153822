import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { connectAs } from './helpers/client';
import { spawnServer } from './helpers/process';

/** SIGTERM/SIGINT on the real process: tell, close, flush the log, exit 0 in bounded time. */
describe.each(['SIGTERM', 'SIGINT'] as const)('%s', (signal) => {
  test('every connection is told, then closed; the log is flushed and the process exits 0', async () => {
    const server = await spawnServer({ logFileLevel: 'debug' });
    const alice = await connectAs(server.wsUrl, 'alice');
    const bob = await connectAs(server.wsUrl, 'bob');
    await alice.join('room');
    await bob.join('room');
    const disconnected = [alice, bob].map((client) => new Promise((resolve) => client.socket.once('disconnect', resolve)));

    const sentAt = Date.now();
    server.child.kill(signal);
    for (const client of [alice, bob]) {
      const notice = await client.nextAction('session-event', { event: 'shutdown' });
      expect(notice).toMatchObject({
        from: 'jsongle-server',
        to: client.sid,
        jsongle: { description: { shutdown: expect.any(String) as unknown } },
      });
    }
    // A transport close, not an 'io server disconnect': Socket.IO clients then reconnect by
    // themselves, to another process behind the load balancer during a rolling restart.
    await expect(Promise.all(disconnected)).resolves.toEqual(['transport close', 'transport close']);
    await expect(server.exited).resolves.toBe(0);
    expect(Date.now() - sentAt).toBeLessThan(10_000);

    const logFile = readdirSync(server.logDir).find((name) => name.endsWith('.log'));
    const lines = readFileSync(path.join(server.logDir, String(logFile)), 'utf8')
      .trim()
      .split('\n');
    // Written, and after it the connections' last words: the file was flushed before the exit.
    const shutdownLine = lines.findIndex((line) => line.includes(`${signal} received: shutting down`));
    expect(shutdownLine).toBeGreaterThanOrEqual(0);
    expect(lines.slice(shutdownLine).some((line) => line.includes('"message":"disconnected"'))).toBe(true);
  });
});
