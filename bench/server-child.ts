import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { loadConfig } from '../src/config';
import { createServer } from '../src/server';
import { createBaselineServer } from './baseline-server';
import { serve } from './ipc';
import { createPeerjsServer } from './peerjs-server';

/**
 * The server under test, alone in its process (pinned to one core by bench/run.ts): either
 * JSONgle-Server built from src/ exactly as src/index.ts builds it, the bare Socket.IO baseline, or
 * the PeerJS server (the second baseline, on its own protocol).
 * It reports its own CPU time, memory and event-loop delay over IPC, so that nothing is added to src/.
 */

export type ServerKind = 'ours' | 'baseline' | 'peerjs';

export interface ServerStats {
  /** process.cpuUsage() user + system, µs since start (for a cluster: its processes' and redis-server's). */
  cpuUs: number;
  /** A cluster's redis-server's share of cpuUs (from /proc, 10 ms resolution). */
  redisCpuUs?: number;
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  /** Event-loop delay since the last reset, ms. */
  eldP50Ms: number;
  eldP99Ms: number;
  eldMaxMs: number;
  /** Event-loop utilisation since the last reset, 0–1. */
  elu: number;
  connections: number;
}

/** Passed by bench/harness.ts: this file runs compiled from bench/out/build. */
const PROJECT_ROOT = process.argv[3] ?? process.cwd();
const argument = process.argv[2];
/** Scenario 5: one of several JSONgle-Server processes sharing this Redis (registry and Socket.IO adapter). */
const REDIS_URL = process.argv[4];
if (argument !== 'ours' && argument !== 'baseline' && argument !== 'peerjs')
  throw new Error(`usage: server-child.js ours|baseline|peerjs <project root> [redisUrl] (got ${String(argument)})`);
const kind: ServerKind = argument;
if (kind !== 'ours' && REDIS_URL !== undefined) throw new Error(`the ${kind} server has no Redis mode`);

async function main(): Promise<void> {
  const logDir = mkdtempSync(path.join(tmpdir(), 'jsongle-bench-'));
  // Production defaults from .env.defaults, except what a load test on one address needs:
  // plain HTTP (useHTTPS=false, as behind a TLS proxy), no capacity or per-address cap in the
  // way, MUC rooms of 50, and a per-connection rate limit above what the generator sends
  // (the limiter still runs on every message). The log file keeps its production level (logFileLevel).
  // With a Redis URL (scenario 5, ours only), the rest stays the same: reconnectGraceMs and the
  // heartbeat keep their defaults.
  const config = loadConfig(
    {
      wsPort: '0',
      restPort: '0',
      useHTTPS: 'false',
      logPath: path.join(logDir, 'jsongle-server.log'),
      maxConcurrentUsers: '100000',
      maxConnectionsPerAddress: '100000',
      maxMembersPerMultiRoom: '50',
      maxMessagesPerSecond: '1000',
      demo: 'false',
      ...(REDIS_URL === undefined ? {} : { redisUrl: REDIS_URL }),
    },
    PROJECT_ROOT,
  );

  let port: number;
  let connections: () => Promise<number>;
  let close: () => Promise<void>;
  if (kind === 'ours') {
    const server = await createServer(config);
    port = (await server.listen('127.0.0.1')).wsPort;
    connections = async () => (await server.registry.counts()).connections;
    close = async () => {
      await server.close();
      await server.logging.close();
    };
  } else if (kind === 'peerjs') {
    const server = createPeerjsServer();
    port = await server.listen('127.0.0.1');
    connections = async () => server.connections();
    close = () => server.close();
  } else {
    const server = createBaselineServer(config);
    port = await server.listen('127.0.0.1');
    connections = async () => server.connections();
    close = () => server.close();
  }

  // The histogram records whole sampling intervals: the lag is what exceeds the resolution.
  const resolutionMs = 5;
  const delay = monitorEventLoopDelay({ resolution: resolutionMs });
  delay.enable();
  const lagMs = (ns: number) => (delay.count > 0 ? Math.max(0, ns / 1e6 - resolutionMs) : 0);
  let eluMark = performance.eventLoopUtilization();

  const stats = async ({ reset = false, gc = false }: { reset?: boolean; gc?: boolean }): Promise<ServerStats> => {
    if (gc && global.gc) {
      global.gc();
      global.gc();
    }
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    const result: ServerStats = {
      cpuUs: cpu.user + cpu.system,
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      heapTotal: memory.heapTotal,
      external: memory.external,
      eldP50Ms: lagMs(delay.percentile(50)),
      eldP99Ms: lagMs(delay.percentile(99)),
      eldMaxMs: lagMs(delay.max),
      elu: performance.eventLoopUtilization(eluMark).utilization,
      connections: await connections(),
    };
    if (reset) {
      delay.reset();
      eluMark = performance.eventLoopUtilization();
    }
    return result;
  };

  let profiler: Session | undefined;
  serve(
    {
      stats,
      profileStart: async () => {
        profiler = new Session();
        profiler.connect();
        await profiler.post('Profiler.enable');
        await profiler.post('Profiler.setSamplingInterval', { interval: 250 });
        await profiler.post('Profiler.start');
        return true;
      },
      profileStop: async ({ file }: { file: string }) => {
        if (!profiler) return false;
        const { profile } = await profiler.post('Profiler.stop');
        writeFileSync(file, JSON.stringify(profile));
        profiler.disconnect();
        profiler = undefined;
        return true;
      },
      exit: async () => {
        await close();
        rmSync(logDir, { recursive: true, force: true });
        // After the answer is on its way.
        setTimeout(() => process.exit(0), 50);
        return true;
      },
    },
    { kind, port, pid: process.pid },
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
