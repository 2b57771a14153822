import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import winston from 'winston';
import { connectAs } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';

const ROTATED_FILE = /^jsongle-server-\d{4}-\d{2}-\d{2}\.log$/;
// A token keeps the start-up warning about an open server off the test output.
const APP_TOKEN = 'logging-test-token';
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

type LogLine = Record<string, unknown> & { timestamp: string; level: string; message: string };

/** Every line of the rotated log files in `logDir`, parsed (each line is one JSON object). */
function readLog(logDir: string): LogLine[] {
  const files = readdirSync(logDir).filter((name) => ROTATED_FILE.test(name));
  return files
    .flatMap((name) => readFileSync(path.join(logDir, name), 'utf8').split('\n'))
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as LogLine);
}

/** Polls the log until a line matches, for at most `timeoutMs`; resolves with every line then. */
async function waitForLine(logDir: string, match: (line: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = readLog(logDir);
    if (lines.some(match) || Date.now() >= deadline) return lines;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function consoleTransport(server: TestServer): winston.transport {
  const found = server.server.logging.logger.transports.find((transport) => transport instanceof winston.transports.Console);
  if (!found) throw new Error('the logger has no console transport');
  return found;
}

describe('logging', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startServer({ logDefaultLevel: 'warn', logFileLevel: 'debug', appToken: APP_TOKEN });
  });
  afterEach(() => {
    jest.restoreAllMocks();
  });
  afterAll(async () => {
    await server.close();
  });

  test('with the console at warn and the file at debug, a debug line reaches the rotated file only, as JSON', async () => {
    expect(server.server.logging.consoleLevel()).toBe('warn');
    // Keeps the console quiet and records what reaches it (winston filters by level before `log`).
    const toConsole = jest.spyOn(consoleTransport(server), 'log').mockImplementation((_info: unknown, next: () => void) => next());

    server.server.logging.logger.debug('marker-xyz', { module: 'test' });
    const lines = await waitForLine(server.logDir, (line) => line.message === 'marker-xyz');

    expect(readdirSync(server.logDir).filter((name) => ROTATED_FILE.test(name)).length).toBeGreaterThanOrEqual(1);
    expect(lines.filter((line) => line.message === 'marker-xyz')).toEqual([
      { timestamp: expect.stringMatching(ISO_TIME) as unknown, level: 'debug', message: 'marker-xyz', module: 'test' },
    ]);
    expect(toConsole).not.toHaveBeenCalled();

    server.server.logging.logger.warn('marker-warn', { module: 'test' });
    expect(toConsole).toHaveBeenCalledWith(expect.objectContaining({ level: 'warn', message: 'marker-warn' }), expect.any(Function));
  });

  test("a connection's debug lines carry its session id", async () => {
    const alice = await connectAs(server.wsUrl, 'alice', { appToken: APP_TOKEN });
    const bob = await connectAs(server.wsUrl, 'bob', { appToken: APP_TOKEN });
    expect(alice.sid).not.toBe('');
    alice.close();
    bob.close();

    const isDisconnect = (sid: string) => (line: LogLine) => line.session === sid && line.message === 'disconnected';
    await waitForLine(server.logDir, isDisconnect(alice.sid));
    const lines = await waitForLine(server.logDir, isDisconnect(bob.sid));

    for (const client of [alice, bob]) {
      const own = lines.filter((line) => line.session === client.sid);
      expect(own.map((line) => line.message)).toEqual(expect.arrayContaining(['connected', 'disconnected']));
      for (const line of own) {
        expect(line).toMatchObject({ module: 'signaling', timestamp: expect.stringMatching(ISO_TIME) as unknown });
      }
      expect(own.find((line) => line.message === 'connected')).toMatchObject({ level: 'debug' });
      expect(own.find((line) => line.message === 'disconnected')).toMatchObject({ level: 'debug' });
    }
  });

  test('a change of the console level is logged with the new level', async () => {
    jest.spyOn(consoleTransport(server), 'log').mockImplementation((_info: unknown, next: () => void) => next());
    await server.rest().put('/logs/levels').send({ level: 'info' }).expect(200);
    server.server.logging.setConsoleLevel('warn');

    const lines = await waitForLine(server.logDir, (line) => line.message === 'console log level changed');
    const line = lines.find((candidate) => candidate.message === 'console log level changed');
    expect(line).toBeDefined();
    // winston's own `level` is the line's severity; the new console level must be in another field.
    const fields = Object.fromEntries(Object.entries(line ?? {}).filter(([key]) => !['level', 'timestamp', 'message'].includes(key)));
    expect(Object.values(fields)).toContain('info');
    expect(fields).toMatchObject({ was: 'warn' });
  });
});

describe('the log file at its default level (info)', () => {
  test('keeps info lines and leaves out the per-connection debug lines', async () => {
    const server = await startServer({ appToken: APP_TOKEN });
    try {
      const alice = await connectAs(server.wsUrl, 'alice', { appToken: APP_TOKEN });
      alice.close();
      server.server.logging.logger.debug('marker-debug', { module: 'test' });
      server.server.logging.logger.info('marker-info', { module: 'test' });
      const lines = await waitForLine(server.logDir, (line) => line.message === 'marker-info');
      expect(lines.filter((line) => line.message === 'marker-info')).toHaveLength(1);
      expect(lines.filter((line) => line.message === 'marker-debug' || line.session === alice.sid)).toEqual([]);
    } finally {
      await server.close();
    }
  });
});

describe('closing the logging', () => {
  test('once logging.close() resolves, the file holds every line logged before', async () => {
    const server = await startServer({ logDefaultLevel: 'warn', logFileLevel: 'debug', appToken: APP_TOKEN });
    try {
      server.server.logging.logger.debug('marker-xyz', { module: 'test' });
      await server.server.close();
      await server.server.logging.close();

      const marker = readLog(server.logDir).filter((line) => line.message === 'marker-xyz');
      expect(marker).toEqual([
        { timestamp: expect.stringMatching(ISO_TIME) as unknown, level: 'debug', message: 'marker-xyz', module: 'test' },
      ]);
    } finally {
      // Not server.close(): the logging is closed already, and a second close would wait for ever.
      rmSync(server.logDir, { recursive: true, force: true });
    }
  });
});
