import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as prettier from 'prettier';
import { BENCH_DIR, build, cleanBuild, CLUSTER_PROCESSES, Harness, pinSelf, redisServerAvailable, sleep, type Setup } from './harness';
import { parseArgs, PEERJS_SCENARIOS, type Options, type ScenarioName } from './plans';
import { profileMarkdown, summarizeProfile } from './profile';
import { latencyChart, markdown } from './report';
import { REDIS_PAIR, summarize, summarizePeerjs, type Report, type RunResult } from './results';
import { capacity, handshakes, muc, redisRelay, relay, type ScenarioResult } from './scenarios';

/**
 * `npm run bench` (full, < 15 min), `npm run bench -- --quick` (a few minutes), `--smoke` (seconds,
 * for the test). Also `--only relay,muc,redis`, `--no-peerjs` (no PeerJS runs), `--only peerjs`
 * (JSONgle-Server against PeerJS alone: handshakes and relay), `--out DIR`, `--generators N`; `--profile`: both
 * servers under the V8 profiler, one process per scenario (for redis: the two clustered processes),
 * summarised into PROFILE.md; `--report`: RESULTS.md written again from the last results.json.
 */

const SCENARIO_RUNNERS: Record<ScenarioName, (h: Harness, plan: Options['plan'], tag: string) => Promise<ScenarioResult>> = {
  capacity,
  handshakes,
  relay,
  muc,
  redis: redisRelay,
};

const REDIS_MISSING = '/usr/bin/redis-server is not installed here (apt-get install redis-server, as .ci/run does).';

const CHART_FILE = 'latency-vs-load.svg';

/** Writes a generated Markdown or JSON file as Prettier would, so that `npm run lint` stays clean. */
async function writeFormatted(file: string, text: string): Promise<void> {
  const options = (await prettier.resolveConfig(file)) ?? {};
  writeFileSync(file, await prettier.format(text, { ...options, filepath: file }));
}

function machine(): Report['machine'] {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown CPU',
    memoryGb: os.totalmem() / 1024 ** 3,
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    loadStart: os.loadavg(),
    loadEnd: [],
  };
}

async function compare(options: Options, h: Harness): Promise<RunResult[]> {
  const runs: RunResult[] = [];
  const count: Record<Setup, number> = { ours: 0, baseline: 0, peerjs: 0, cluster: 0 };
  const scenarios = options.only.filter((s) => s !== 'redis');
  if (scenarios.length === 0) return runs;
  for (const kind of options.plan.order) {
    // PeerJS runs only what fits it, with its own (shorter) ramp.
    const fitting = kind === 'peerjs' ? scenarios.filter((s) => PEERJS_SCENARIOS.includes(s)) : scenarios;
    if (!options.setups.includes(kind) || fitting.length === 0) continue;
    const plan = kind === 'peerjs' ? { ...options.plan, ...options.plan.peerjs } : options.plan;
    const index = ++count[kind];
    const tag = `${kind === 'ours' ? 'JSONgle-Server' : kind === 'peerjs' ? 'PeerJS' : 'baseline'}#${index}`;
    await h.start(kind);
    h.progress(`${tag} started at ${h.url}`);
    const run: RunResult = { kind, index, metrics: [], steps: [] };
    try {
      for (const scenario of fitting) {
        h.progress(`${tag} ${scenario}…`);
        const result = await SCENARIO_RUNNERS[scenario](h, plan, tag);
        run.metrics.push(...result.metrics);
        run.steps.push(...result.steps);
      }
    } finally {
      await h.stopServer();
    }
    runs.push(run);
    // Lets the sockets of the last run close before the next server starts.
    await sleep(options.plan.settleMs);
  }
  return runs;
}

/** Scenario 5: the P2P relay on one process and on two through Redis, interleaved as the plan says. */
async function compareRedis(options: Options, h: Harness): Promise<Report['redis']> {
  if (!options.only.includes('redis')) return undefined;
  if (!redisServerAvailable()) {
    h.progress(`*** scenario 5 (Redis) SKIPPED: ${REDIS_MISSING} ***`);
    return { skipped: REDIS_MISSING };
  }
  const runs: RunResult[] = [];
  const count = { ours: 0, cluster: 0 };
  for (const setup of options.plan.redis.order) {
    const index = ++count[setup];
    const tag = `${setup === 'cluster' ? `${CLUSTER_PROCESSES} processes + Redis` : 'one process'}#${index}`;
    await h.start(setup);
    h.progress(`${tag} started at ${h.urls.join(', ')}`);
    try {
      const result = await redisRelay(h, options.plan, tag);
      runs.push({ kind: setup, index, ...result });
    } finally {
      await h.stopServer();
    }
    await sleep(options.plan.settleMs);
  }
  return { runs, rows: summarize(runs, REDIS_PAIR), processes: CLUSTER_PROCESSES };
}

async function profile(options: Options, h: Harness): Promise<string> {
  const dir = path.join(BENCH_DIR, 'out', 'profiles');
  mkdirSync(dir, { recursive: true });
  const sections: string[] = [];
  for (const scenario of options.only.filter((s) => s !== 'capacity')) {
    const setups: Setup[] = scenario === 'redis' ? (redisServerAvailable() ? ['cluster'] : []) : ['ours', 'baseline'];
    for (const setup of setups) {
      const file = path.join(dir, `${setup}-${scenario}.cpuprofile`);
      await h.start(setup);
      h.progress(`profiling ${setup} in ${scenario}`);
      let files: string[] = [];
      try {
        await h.startProfile();
        await SCENARIO_RUNNERS[scenario](h, options.plan, `${setup}(profiled)`);
        files = await h.stopProfile(file);
      } finally {
        await h.stopServer();
      }
      const name = setup === 'ours' ? 'JSONgle-Server' : setup === 'baseline' ? 'baseline' : 'JSONgle-Server through Redis, process';
      files.forEach((f, i) =>
        sections.push(
          profileMarkdown(`${name}${setup === 'cluster' ? ` ${String.fromCharCode(65 + i)}` : ''}, ${scenario}`, summarizeProfile(f)),
        ),
      );
    }
  }
  return sections.join('\n');
}

/** Links to the profile and to the hand-written findings, when they are there. */
function notes(outDir: string): string | undefined {
  const links = [
    existsSync(path.join(outDir, 'FINDINGS.md'))
      ? 'what the numbers mean, the targets missed, the hot spots, and each fix with its before and after (the previous and the current code run back to back): [FINDINGS.md](FINDINGS.md)'
      : '',
    existsSync(path.join(outDir, 'PROFILE.md'))
      ? 'where the CPU goes, from `npm run bench -- --quick --profile`: [PROFILE.md](PROFILE.md)'
      : '',
  ].filter(Boolean);
  return links.length > 0 ? `See ${links.join('; ')}.` : undefined;
}

/** RESULTS.md, the chart and results.json; the rows are summarised again from the runs. */
async function writeReport(outDir: string, report: Report): Promise<void> {
  const redis = report.redis && 'runs' in report.redis ? { ...report.redis, rows: summarize(report.redis.runs, REDIS_PAIR) } : report.redis;
  const peerjsRows = summarizePeerjs(report.runs);
  const peerjs = peerjsRows.length > 0 ? { rows: peerjsRows } : undefined;
  const full: Report = { ...report, rows: summarize(report.runs), redis, peerjs, profileNote: notes(outDir) };
  const chart = latencyChart(full.runs, 'P2P relay');
  if (chart) writeFileSync(path.join(outDir, CHART_FILE), chart);
  await writeFormatted(path.join(outDir, 'RESULTS.md'), markdown(full, chart ? CHART_FILE : undefined));
  await writeFormatted(path.join(outDir, 'results.json'), JSON.stringify(full));
  console.log('summary (JSONgle-Server / baseline = ratio):');
  const fmt = (n: number | undefined) => (n === undefined ? '–' : n.toFixed(2));
  const print = (row: Report['rows'][number]) => {
    const ratio = row.ratio === undefined ? '' : ` = ${row.ratio.toFixed(2)}×`;
    console.log(
      `  ${row.scenario} | ${row.metric}: ${fmt(row.ours)} / ${fmt(row.baseline)}${ratio} ${row.verdict} ${row.flags.join('; ')}`,
    );
  };
  full.rows.forEach(print);
  if (peerjs) {
    console.log('JSONgle-Server vs PeerJS (JSONgle-Server / PeerJS = ratio; a PeerJS handshake is connect + OPEN):');
    peerjs.rows.forEach(print);
  }
  if (redis && 'rows' in redis) {
    console.log('scenario 5 (two processes through Redis / one process = ratio):');
    redis.rows.forEach(print);
  } else if (redis) console.log(`scenario 5 not run: ${redis.skipped}`);
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2), BENCH_DIR);
  if (options.reportOnly) {
    // Renders the report again from the last run's results.json, without measuring anything.
    const report = JSON.parse(readFileSync(path.join(options.outDir, 'results.json'), 'utf8')) as Report;
    await writeReport(options.outDir, report);
    return;
  }
  const started = Date.now();
  const info = machine();
  pinSelf();
  const h = new Harness(options.generators);
  const stop = () => {
    void h.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  h.progress(
    `bench ${options.plan.mode}: ${options.only.join(', ')}; ${info.cpus} cores, Node ${info.node}, load ${os.loadavg()[0]?.toFixed(2) ?? '?'}`,
  );
  build();
  await h.startGenerators();
  mkdirSync(options.outDir, { recursive: true });
  try {
    if (options.profile) {
      const text = await profile(options, h);
      const file = path.join(options.outDir, 'PROFILE.md');
      await writeFormatted(
        file,
        `# Where the server's CPU goes (\`npm run bench -- --profile${options.plan.mode === 'full' ? '' : ` --${options.plan.mode}`}\`)\n\n` +
          `Taken ${new Date().toISOString().slice(0, 10)} with V8's sampling profiler (what \`node --cpu-prof\` uses, started over node:inspector ` +
          `in the server child just before the scenario and stopped just after, so that start-up is left out; 250 µs sampling), ` +
          `same loads as the ${options.plan.mode} bench; noisy shared machine. Line numbers are those of the compiled JavaScript in bench/out/build/<pid> (TypeScript's emit, file by file).\n\n${text}`,
      );
      h.progress(`wrote ${file}`);
      return;
    }
    const runs = await compare(options, h);
    const redis = await compareRedis(options, h);
    info.loadEnd = os.loadavg();
    await writeReport(options.outDir, {
      mode: options.plan.mode,
      date: new Date().toISOString().slice(0, 10),
      command: `npm run bench${options.plan.mode === 'full' ? '' : ` -- --${options.plan.mode}`}`,
      durationS: (Date.now() - started) / 1000,
      machine: info,
      generators: options.generators,
      rows: [],
      runs,
      redis,
    });
    h.progress(`wrote ${path.join(options.outDir, 'RESULTS.md')} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await h.stop();
    cleanBuild();
  }
}

main().catch((error: unknown) => {
  console.error('bench failed:', error instanceof Error ? error.stack : error);
  process.exit(1);
});
