import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import ts from 'typescript';
import type { ClientProtocol, LoadArgs, LoadResult, OpenArgs, OpenResult } from './generator';
import { LatencyHistogram } from './histogram';
import { RpcChild } from './ipc';
import { PEERJS_PATH } from './peerjs-client';
import type { ServerKind, ServerStats } from './server-child';

/**
 * Starts and drives the processes of a bench run: the server under test pinned to core 0 (or, for
 * scenario 5, two JSONgle-Server processes and their redis-server, all pinned to core 0), the
 * generator processes pinned to core 1, and spreads each load over the generators.
 */

export const BENCH_DIR = __dirname;
export const PROJECT_ROOT = path.join(__dirname, '..');
const SERVER_CORE = '0';
const GENERATOR_CORE = '1';
const REDIS_SERVER = '/usr/bin/redis-server';

const hasTaskset = spawnSync('taskset', ['-V']).status === 0;

/** What a run measures: one server process (ours, the Socket.IO baseline or PeerJS), or two of ours sharing a redis-server. */
export type Setup = ServerKind | 'cluster';

/** Processes of JSONgle-Server in the clustered setup (scenario 5); the two members of a room are on different ones. */
export const CLUSTER_PROCESSES = 2;

/**
 * The server and the generators run compiled, like `node dist/index.js` in production: no tsx loader
 * in them. One folder per bench process, so that a run measures one snapshot of src/ even if another
 * run (the smoke test in someone's jest) builds meanwhile.
 */
const BUILD_ROOT = path.join(BENCH_DIR, 'out', 'build');
const BUILD_DIR = path.join(BUILD_ROOT, String(process.pid));

const isRunning = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Where `from './x'` in `file` points: x.ts or x/index.ts. */
function resolveImport(file: string, specifier: string): string | undefined {
  const base = path.resolve(path.dirname(file), specifier);
  return [`${base}.ts`, path.join(base, 'index.ts')].find((candidate) => existsSync(candidate));
}

/**
 * Compiles the server child and the generator, and what they import from src/ and bench/, with the
 * TypeScript compiler, file by file (emit only, as `isolatedModules` in tsconfig.json guarantees is
 * the same output as tsc's; type-checking is `npm run lint`'s job): a second or so instead of ten.
 */
export function build(): void {
  // Folders of bench runs that are gone (and the single folder of earlier versions of this harness).
  if (existsSync(BUILD_ROOT)) {
    for (const entry of readdirSync(BUILD_ROOT)) {
      const live = /^\d+$/.test(entry) && (Number(entry) === process.pid || isRunning(Number(entry)));
      if (!live) rmSync(path.join(BUILD_ROOT, entry), { recursive: true, force: true });
    }
  }
  const compilerOptions: ts.CompilerOptions = {
    module: ts.ModuleKind.CommonJS,
    target: ts.ScriptTarget.ES2022,
    esModuleInterop: true,
    strict: true,
  };
  const queue = ['server-child.ts', 'generator.ts'].map((f) => path.join(BENCH_DIR, f));
  const done = new Set<string>();
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    if (done.has(file)) continue;
    done.add(file);
    const source = readFileSync(file, 'utf8');
    const output = ts.transpileModule(source, { compilerOptions, fileName: file, reportDiagnostics: true });
    const errors = (output.diagnostics ?? []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    if (errors.length > 0) throw new Error(`cannot compile ${file}: ${errors.join('; ')}`);
    const target = path.join(BUILD_DIR, path.relative(PROJECT_ROOT, file)).replace(/\.ts$/, '.js');
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, output.outputText);
    for (const imported of ts.preProcessFile(source, true, true).importedFiles) {
      if (!imported.fileName.startsWith('.')) continue;
      const resolved = resolveImport(file, imported.fileName);
      if (resolved) queue.push(resolved);
    }
  }
  // src/server.ts reads the package's name and version one level above itself. Another name than
  // the package's own, or jest's module map would see two packages of one name.
  const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  const copy = {
    name: `${String(pkg.name)}-bench-build-${process.pid}`,
    version: pkg.version,
    description: pkg.description,
    private: true,
  };
  writeFileSync(path.join(BUILD_DIR, 'package.json'), JSON.stringify(copy));
}

/** Removes this run's build. */
export function cleanBuild(): void {
  rmSync(BUILD_DIR, { recursive: true, force: true });
}

/** Runs `node <args>` through `taskset -c core` when there is one (Linux). */
function startNode(name: string, core: string, nodeArgs: string[]): RpcChild {
  const args = [...nodeArgs];
  const [command, commandArgs] = hasTaskset ? ['taskset', ['-c', core, process.execPath, ...args]] : [process.execPath, args];
  const child = spawn(command, commandArgs, { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  return new RpcChild(name, child);
}

/** Keeps the orchestrator itself off the server's core. */
export function pinSelf(): void {
  if (hasTaskset) spawnSync('taskset', ['-a', '-cp', GENERATOR_CORE, String(process.pid)], { stdio: 'ignore' });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Linux's USER_HZ: the unit of the CPU times in /proc. */
const CLOCK_TICKS = 100;

/** Busy CPU ticks of the whole machine (all cores), from /proc/stat; NaN where there is no /proc. */
function machineBusyTicks(): number {
  if (!existsSync('/proc/stat')) return Number.NaN;
  const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return user + nice + system + irq + softirq + steal;
}

/** utime + stime of one process, in ticks. */
function processTicks(pid: number | undefined): number {
  if (pid === undefined || !existsSync(`/proc/${pid}/stat`)) return 0;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
}

/** Resident memory of one process, bytes (VmRSS). */
function processRss(pid: number | undefined): number {
  if (pid === undefined || !existsSync(`/proc/${pid}/status`)) return 0;
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) * 1024;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Whether scenario 5 can run here: it needs Debian's redis-server (what CI installs). */
export function redisServerAvailable(): boolean {
  return spawnSync(REDIS_SERVER, ['--version']).status === 0;
}

/** Pids of redis-servers this process started and has not stopped yet: killed should the bench end abruptly. */
const redisPids = new Set<number>();
process.on('exit', () => {
  for (const pid of redisPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
});

/**
 * A private redis-server for one clustered run: loopback only, on a free port, pinned to the
 * servers' core, no persistence and a memory cap; stopped (and its data gone) after the run.
 */
export class RedisServer {
  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(core = SERVER_CORE): Promise<RedisServer> {
    const port = await freePort();
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'yes', '--save', '', '--appendonly', 'no'];
    args.push('--maxmemory', '256mb', '--maxmemory-policy', 'noeviction', '--loglevel', 'warning');
    const [command, commandArgs] = hasTaskset ? ['taskset', ['-c', core, REDIS_SERVER, ...args]] : [REDIS_SERVER, args];
    const child = spawn(command, commandArgs, { stdio: 'ignore' });
    if (child.pid !== undefined) redisPids.add(child.pid);
    const redis = new RedisServer(child, port);
    const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined);
    const deadline = Date.now() + 5000;
    try {
      for (;;) {
        try {
          await probe.connect();
          await probe.ping();
          break;
        } catch (error) {
          if (Date.now() > deadline || child.exitCode !== null)
            throw new Error(`redis-server did not start on port ${port}: ${String(error)}`);
          await sleep(50);
        }
      }
    } catch (error) {
      await redis.stop();
      throw error;
    } finally {
      probe.disconnect();
    }
    return redis;
  }

  /** SIGTERM (nothing to save), SIGKILL if it has not exited within 3 s. */
  async stop(): Promise<void> {
    const { child } = this;
    if (child.pid !== undefined) redisPids.delete(child.pid);
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}

/** What the generators report about themselves during a step: worst ELU and the share of their core they used. */
export interface GeneratorLoad {
  elu: number;
  coreShare: number;
  /** The rule: a generator above 0.8 may be the bottleneck, so the result is flagged. */
  saturated: boolean;
}

function generatorLoad(results: { elu: number; cpuMs: number; elapsedMs: number }[]): GeneratorLoad {
  const elu = Math.max(...results.map((r) => r.elu));
  const elapsed = Math.max(...results.map((r) => r.elapsedMs));
  const coreShare = results.reduce((sum, r) => sum + r.cpuMs, 0) / Math.max(1, elapsed);
  return { elu, coreShare, saturated: elu > 0.8 || coreShare > 0.8 };
}

export interface Opened {
  /** Cores that other processes of the machine kept busy meanwhile (the noise of a shared machine). */
  otherCores: number;
  opened: number;
  failed: number;
  errors: string[];
  handshake: LatencyHistogram;
  elapsedMs: number;
  generator: GeneratorLoad;
}

export interface Loaded {
  otherCores: number;
  sent: number;
  expected: number;
  received: number;
  latency: LatencyHistogram;
  spanMs: number;
  elapsedMs: number;
  generator: GeneratorLoad;
}

export class Harness {
  private readonly started = Date.now();
  private generators: RpcChild[] = [];
  /** The server processes under test: one, or CLUSTER_PROCESSES sharing `redis`. */
  private servers: RpcChild[] = [];
  private redis: RedisServer | undefined;
  /** The servers' Socket.IO (or PeerJS WebSocket) URLs; member m of a room connects to urls[m % urls.length]. */
  urls: string[] = [];
  /** What the generators speak to the running server. */
  private protocol: ClientProtocol = 'jsongle';
  /** Rooms each generator holds now, to share a message rate in proportion. */
  private roomsPerGenerator: number[] = [];

  constructor(
    private readonly generatorCount: number,
    private readonly quiet = false,
  ) {}

  get url(): string {
    return this.urls[0] ?? '';
  }

  progress(line: string): void {
    if (this.quiet) return;
    const s = Math.round((Date.now() - this.started) / 1000);
    console.log(`[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${line}`);
  }

  async startGenerators(): Promise<void> {
    const origin = process.hrtime.bigint().toString();
    this.generators = Array.from({ length: this.generatorCount }, (_, i) =>
      startNode(`generator-${i}`, GENERATOR_CORE, [path.join(BUILD_DIR, 'bench', 'generator.js')]),
    );
    await Promise.all(this.generators.map((g) => g.ready));
    await Promise.all(this.generators.map((g) => g.call('setup', { origin })));
  }

  private async startServerProcess(kind: ServerKind, name: string, redisUrl?: string): Promise<{ server: RpcChild; url: string }> {
    const args = ['--expose-gc', path.join(BUILD_DIR, 'bench', 'server-child.js'), kind, PROJECT_ROOT];
    const server = startNode(name, SERVER_CORE, redisUrl === undefined ? args : [...args, redisUrl]);
    try {
      const ready = (await server.ready) as { port: number };
      const url = kind === 'peerjs' ? `ws://127.0.0.1:${ready.port}${PEERJS_PATH}` : `http://127.0.0.1:${ready.port}`;
      return { server, url };
    } catch (error) {
      await server.stopped(1000);
      throw error;
    }
  }

  /**
   * Starts what `setup` measures: one server process, or (`cluster`) a private redis-server and
   * CLUSTER_PROCESSES JSONgle-Server processes with `redisUrl` pointing at it. Everything on core 0.
   */
  async start(setup: Setup): Promise<void> {
    if (this.servers.length > 0) throw new Error('a server is already running');
    this.protocol = setup === 'peerjs' ? 'peerjs' : 'jsongle';
    if (setup !== 'cluster') {
      const { server, url } = await this.startServerProcess(setup, `server-${setup}`);
      this.servers = [server];
      this.urls = [url];
      return;
    }
    this.redis = await RedisServer.start();
    const started = await Promise.allSettled(
      Array.from({ length: CLUSTER_PROCESSES }, (_, i) => this.startServerProcess('ours', `server-ours-${i}`, this.redis?.url)),
    );
    this.servers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value.server] : []));
    this.urls = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value.url] : []));
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) {
      await this.stopServer();
      throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
    }
  }

  /** The redis-server of a clustered run, if one is running. */
  get redisPid(): number | undefined {
    return this.redis?.pid;
  }

  async stopServer(): Promise<void> {
    const servers = this.servers;
    this.servers = [];
    this.urls = [];
    await Promise.all(
      servers.map(async (server) => {
        await server.call('exit', {}, 30_000).catch(() => undefined);
        await server.stopped(10_000);
      }),
    );
    const redis = this.redis;
    this.redis = undefined;
    await redis?.stop();
  }

  private stopping: Promise<void> | undefined;

  /** Ends the servers, redis-server and the generators; safe to call twice (a signal during the run, then `finally`). */
  stop(): Promise<void> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  private async stopAll(): Promise<void> {
    await this.stopServer();
    await Promise.all(
      this.generators.map(async (g) => {
        await g.call('exit', {}, 10_000).catch(() => undefined);
        await g.stopped(5_000);
      }),
    );
  }

  /** Profiles the servers' main threads from now until `stopProfile` (node:inspector, as --cpu-prof does). */
  async startProfile(): Promise<void> {
    await Promise.all(this.servers.map((server) => server.call('profileStart')));
  }

  /** Writes one profile per server process: `file`, then `file` with -1, -2… before its extension. */
  async stopProfile(file: string): Promise<string[]> {
    const files = this.servers.map((_, i) => (i === 0 ? file : file.replace(/(\.cpuprofile)?$/, `-${i}$1`)));
    await Promise.all(this.servers.map((server, i) => server.call('profileStop', { file: files[i] })));
    return files;
  }

  /** A mark from which `otherCores` tells how busy the rest of the machine was. */
  mark(): { at: number; busy: number; ours: number } {
    const pids = [process.pid, this.redis?.pid, ...this.servers.map((s) => s.child.pid), ...this.generators.map((g) => g.child.pid)];
    return { at: Date.now(), busy: machineBusyTicks(), ours: pids.reduce<number>((sum, pid) => sum + processTicks(pid), 0) };
  }

  otherCores(since: { at: number; busy: number; ours: number }): number {
    const now = this.mark();
    const seconds = Math.max(0.001, (now.at - since.at) / 1000);
    return Math.max(0, (now.busy - since.busy - (now.ours - since.ours)) / CLOCK_TICKS / seconds);
  }

  /**
   * The servers' stats; for a cluster, summed over its processes and redis-server (CPU time, memory)
   * or the worst of them (event-loop delay and utilisation). `connections` is the registry's count,
   * which is the whole cluster's with Redis.
   */
  async stats(options: { reset?: boolean; gc?: boolean } = {}): Promise<ServerStats> {
    if (this.servers.length === 0) throw new Error('no server running');
    const all = await Promise.all(this.servers.map((server) => server.call<ServerStats>('stats', options)));
    const first = all[0] as ServerStats;
    if (all.length === 1 && !this.redis) return first;
    const sum = (pick: (s: ServerStats) => number) => all.reduce((n, s) => n + pick(s), 0);
    const max = (pick: (s: ServerStats) => number) => Math.max(...all.map(pick));
    const redisCpuUs = (processTicks(this.redis?.pid) / CLOCK_TICKS) * 1e6;
    return {
      cpuUs: sum((s) => s.cpuUs) + redisCpuUs,
      redisCpuUs,
      rss: sum((s) => s.rss) + processRss(this.redis?.pid),
      heapUsed: sum((s) => s.heapUsed),
      heapTotal: sum((s) => s.heapTotal),
      external: sum((s) => s.external),
      eldP50Ms: max((s) => s.eldP50Ms),
      eldP99Ms: max((s) => s.eldP99Ms),
      eldMaxMs: max((s) => s.eldMaxMs),
      elu: max((s) => s.elu),
      connections: first.connections,
    };
  }
  /**
   * Opens `count` connections across the generators. With a room size, whole rooms go to one
   * generator, so that the sender and the receivers of a message share a process.
   */
  async open(
    count: number,
    options: { room?: OpenArgs['room']; concurrency?: number; rate?: number; timeoutMs?: number },
  ): Promise<Opened> {
    const size = options.room?.size ?? 1;
    const units = Math.ceil(count / size);
    const shares = this.generators.map(
      (_, g) => Math.floor(((g + 1) * units) / this.generators.length) - Math.floor((g * units) / this.generators.length),
    );
    let offset = 0;
    const mark = this.mark();
    const results = await Promise.all(
      this.generators.map((generator, g) => {
        const share = Math.min((shares[g] ?? 0) * size, count - offset);
        const args: OpenArgs = {
          protocol: this.protocol,
          urls: this.urls,
          count: Math.max(0, share),
          offset,
          room: options.room,
          concurrency: options.concurrency,
          rate: options.rate === undefined ? undefined : (options.rate * share) / count,
          timeoutMs: options.timeoutMs ?? 20_000,
        };
        offset += Math.max(0, share);
        return share > 0 ? generator.call<OpenResult>('open', args, 600_000) : Promise.resolve(undefined);
      }),
    );
    const done = results.filter((r): r is OpenResult => r !== undefined);
    if (options.room) this.roomsPerGenerator = results.map((r) => Math.ceil((r?.opened ?? 0) / size));
    const handshake = new LatencyHistogram();
    for (const r of done) handshake.merge(r.handshake);
    return {
      otherCores: this.otherCores(mark),
      opened: done.reduce((n, r) => n + r.opened, 0),
      failed: done.reduce((n, r) => n + r.failed, 0),
      errors: done.flatMap((r) => r.errors),
      handshake,
      elapsedMs: Math.max(0, ...done.map((r) => r.elapsedMs)),
      generator: generatorLoad(done),
    };
  }

  /** Sends `rate` messages per second in all over the open rooms, for `durationMs`. */
  async load(args: Omit<LoadArgs, 'rate' | 'run'> & { rate: number }): Promise<Loaded> {
    const totalRooms = this.roomsPerGenerator.reduce((a, b) => a + b, 0);
    const run = Math.random().toString(36).slice(2, 10);
    const mark = this.mark();
    const results = await Promise.all(
      this.generators.map((generator, g) => {
        const rooms = this.roomsPerGenerator[g] ?? 0;
        if (rooms === 0) return Promise.resolve(undefined);
        const loadArgs: LoadArgs = { ...args, run, rate: (args.rate * rooms) / totalRooms };
        return generator.call<LoadResult>('load', loadArgs, args.durationMs + args.drainMs + 60_000);
      }),
    );
    const done = results.filter((r): r is LoadResult => r !== undefined);
    const latency = new LatencyHistogram();
    for (const r of done) latency.merge(r.latency);
    return {
      otherCores: this.otherCores(mark),
      sent: done.reduce((n, r) => n + r.sent, 0),
      expected: done.reduce((n, r) => n + r.expected, 0),
      received: done.reduce((n, r) => n + r.received, 0),
      latency,
      spanMs: Math.max(0, ...done.map((r) => r.spanMs)),
      elapsedMs: Math.max(0, ...done.map((r) => r.elapsedMs)),
      generator: generatorLoad(done),
    };
  }

  /** Closes every generator connection and waits (bounded) until the server has let them all go. */
  async closeAll(timeoutMs = 20_000): Promise<number> {
    await Promise.all(this.generators.map((g) => g.call<number>('close')));
    this.roomsPerGenerator = [];
    const deadline = Date.now() + timeoutMs;
    let left = (await this.stats()).connections;
    while (left > 0 && Date.now() < deadline) {
      await sleep(100);
      left = (await this.stats()).connections;
    }
    return left;
  }
}
