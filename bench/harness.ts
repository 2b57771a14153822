import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { LoadArgs, LoadResult, OpenArgs, OpenResult } from './generator';
import { LatencyHistogram } from './histogram';
import { RpcChild } from './ipc';
import type { ServerKind, ServerStats } from './server-child';

/**
 * Starts and drives the processes of a bench run: the server under test pinned to core 0, the
 * generator processes pinned to core 1, and spreads each load over the generators.
 */

export const BENCH_DIR = __dirname;
export const PROJECT_ROOT = path.join(__dirname, '..');
const SERVER_CORE = '0';
const GENERATOR_CORE = '1';

const hasTaskset = spawnSync('taskset', ['-V']).status === 0;

/** The server and the generators run compiled, like `node dist/index.js` in production: no tsx loader in them. */
const BUILD_DIR = path.join(BENCH_DIR, 'out', 'build');

/** Compiles the server child and the generator (and what they import from src/) with tsc. */
export function build(): void {
  const tsc = path.join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const options = ['--outDir', BUILD_DIR, '--rootDir', PROJECT_ROOT, '--module', 'node16', '--moduleResolution', 'node16'];
  const more = ['--target', 'ES2022', '--esModuleInterop', '--skipLibCheck', '--resolveJsonModule', '--strict', '--types', 'node'];
  const files = ['server-child.ts', 'generator.ts'].map((f) => path.join(BENCH_DIR, f));
  const result = spawnSync(process.execPath, [tsc, ...options, ...more, ...files], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`tsc failed: ${result.stdout}${result.stderr}`);
  // src/server.ts reads the package's name and version one level above itself. Another name than
  // the package's own, or jest's module map would see two packages of one name.
  const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
  mkdirSync(BUILD_DIR, { recursive: true });
  const copy = { name: `${String(pkg.name)}-bench-build`, version: pkg.version, description: pkg.description, private: true };
  writeFileSync(path.join(BUILD_DIR, 'package.json'), JSON.stringify(copy));
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
  server: RpcChild | undefined;
  url = '';
  /** Rooms each generator holds now, to share a message rate in proportion. */
  private roomsPerGenerator: number[] = [];

  constructor(
    private readonly generatorCount: number,
    private readonly quiet = false,
  ) {}

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

  async startServer(kind: ServerKind): Promise<void> {
    const server = startNode(`server-${kind}`, SERVER_CORE, [
      '--expose-gc',
      path.join(BUILD_DIR, 'bench', 'server-child.js'),
      kind,
      PROJECT_ROOT,
    ]);
    const ready = (await server.ready) as { port: number };
    this.server = server;
    this.url = `http://127.0.0.1:${ready.port}`;
  }

  async stopServer(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await server.call('exit', {}, 30_000).catch(() => undefined);
    await server.stopped(10_000);
  }

  private stopping: Promise<void> | undefined;

  /** Ends the server and the generators; safe to call twice (a signal during the run, then `finally`). */
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

  /** Profiles the server's main thread from now until `stopProfile` (node:inspector, as --cpu-prof does). */
  async startProfile(): Promise<void> {
    await this.server?.call('profileStart');
  }

  async stopProfile(file: string): Promise<void> {
    await this.server?.call('profileStop', { file });
  }

  /** A mark from which `otherCores` tells how busy the rest of the machine was. */
  mark(): { at: number; busy: number; ours: number } {
    const pids = [process.pid, this.server?.child.pid, ...this.generators.map((g) => g.child.pid)];
    return { at: Date.now(), busy: machineBusyTicks(), ours: pids.reduce<number>((sum, pid) => sum + processTicks(pid), 0) };
  }

  otherCores(since: { at: number; busy: number; ours: number }): number {
    const now = this.mark();
    const seconds = Math.max(0.001, (now.at - since.at) / 1000);
    return Math.max(0, (now.busy - since.busy - (now.ours - since.ours)) / CLOCK_TICKS / seconds);
  }

  stats(options: { reset?: boolean; gc?: boolean } = {}): Promise<ServerStats> {
    if (!this.server) throw new Error('no server running');
    return this.server.call<ServerStats>('stats', options);
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
          url: this.url,
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
