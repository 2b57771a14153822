import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { loadConfig, type Config } from '../../src/config';
import { createServer, type JsongleServer } from '../../src/server';

export const PROJECT_ROOT = path.join(__dirname, '..', '..');

export interface TestServer {
  server: JsongleServer;
  config: Readonly<Config>;
  wsUrl: string;
  restUrl: string;
  /** A supertest agent on the REST port, over real HTTPS with the dev certificate. */
  rest(): request.Agent;
  logDir: string;
  close(): Promise<void>;
}

/**
 * Starts a real server on free ports of 127.0.0.1, with the project's .env.defaults under
 * `settings` (environment-style strings) and its log file in a fresh temporary folder.
 */
export async function startServer(settings: Record<string, string> = {}): Promise<TestServer> {
  const logDir = mkdtempSync(path.join(tmpdir(), 'jsongle-test-'));
  const config = loadConfig(
    {
      wsPort: '0',
      restPort: '0',
      logDefaultLevel: 'error',
      logPath: path.join(logDir, 'jsongle-server.log'),
      maxConcurrentUsers: '1000',
      // PROTOCOL.md's 'left' at once on a dropped connection; test/reconnect-grace.test.ts sets its own.
      reconnectGraceMs: '0',
      ...settings,
    },
    PROJECT_ROOT,
  );
  const server = await createServer(config);
  const { wsPort, restPort } = await server.listen('127.0.0.1');
  const scheme = config.useHTTPS ? 'https' : 'http';
  const restUrl = `${scheme}://127.0.0.1:${restPort}`;
  return {
    server,
    config,
    wsUrl: `${scheme}://127.0.0.1:${wsPort}`,
    restUrl,
    rest: () => request.agent(restUrl).disableTLSCerts(),
    logDir,
    async close() {
      await server.close();
      await server.logging.close();
      rmSync(logDir, { recursive: true, force: true });
    },
  };
}

/**
 * The hooks every integration test file needs: one server for the describe block, started before
 * its tests and closed after them, and the clients a test opened closed after each test.
 */
export function withServer(start: () => Promise<TestServer>, use: (server: TestServer) => void, clients: { close(): void }[]): void {
  let server: TestServer | undefined;
  beforeAll(async () => {
    server = await start();
    use(server);
  });
  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
  });
  afterAll(async () => {
    await server?.close();
  });
}
