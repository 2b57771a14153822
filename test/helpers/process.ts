import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRedis, type TestRedis } from './redis';
import { PROJECT_ROOT } from './server';

export interface ServerProcess {
  child: ChildProcess;
  wsUrl: string;
  restUrl: string;
  /** The folder of its log file. */
  logDir: string;
  /** Everything the process printed so far. */
  output(): string;
  /** Resolves with the exit code (or signal name) once the process has ended. */
  exited: Promise<number | string>;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/**
 * Runs the real entry point (src/index.ts, in one Node process through tsx's loader, so that
 * signals reach the server itself) on free ports, and resolves once it has logged its ports.
 */
export async function spawnServer(settings: Record<string, string> = {}): Promise<ServerProcess> {
  const logDir = mkdtempSync(path.join(tmpdir(), 'jsongle-proc-'));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/index.ts'], {
    cwd: PROJECT_ROOT,
    env: {
      PATH: process.env.PATH,
      wsPort: '0',
      restPort: '0',
      logDefaultLevel: 'info',
      logPath: path.join(logDir, 'jsongle-server.log'),
      maxConcurrentUsers: '1000',
      reconnectGraceMs: '0',
      ...settings,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));

  const ports = await new Promise<{ wsPort: number; restPort: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 15 s:\n${output}`)), 15000);
    const check = () => {
      const match = /started .*"wsPort":(\d+),"restPort":(\d+)/.exec(output);
      if (!match) return;
      clearTimeout(timer);
      child.stdout.off('data', check);
      resolve({ wsPort: Number(match[1]), restPort: Number(match[2]) });
    };
    child.stdout.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before it started:\n${output}`));
    });
  });
  const scheme = settings.useHTTPS === 'false' ? 'http' : 'https';
  return {
    child,
    wsUrl: `${scheme}://127.0.0.1:${ports.wsPort}`,
    restUrl: `${scheme}://127.0.0.1:${ports.restPort}`,
    logDir,
    output: () => output,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface TestCluster {
  a: ServerProcess;
  b: ServerProcess;
  redis: TestRedis;
}

/**
 * For a describe block: two real server processes (the real entry point) sharing one real
 * redis-server, started once with `settings` and stopped after the block; `clients` are closed
 * after each test. Like withServer (helpers/server.ts), for the scale-out tests.
 */
export function withCluster(
  settings: Record<string, string>,
  use: (cluster: TestCluster) => void,
  clients: { close(): void }[] = [],
): void {
  let cluster: TestCluster | undefined;
  beforeAll(async () => {
    const redis = await startRedis();
    const shared = { redisUrl: redis.url, ...settings };
    const [a, b] = await Promise.all([spawnServer(shared), spawnServer(shared)]);
    cluster = { a, b, redis };
    use(cluster);
  });
  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
  });
  afterAll(async () => {
    if (!cluster) return;
    await Promise.all([cluster.a.stop(), cluster.b.stop()]);
    await cluster.redis.stop();
  });
}
