import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as prettier from 'prettier';
import { BENCH_DIR, build, Harness, pinSelf, sleep } from './harness';
import { parseArgs, type Options, type ScenarioName } from './plans';
import { profileMarkdown, summarizeProfile } from './profile';
import { latencyChart, markdown } from './report';
import { summarize, type Report, type RunResult } from './results';
import { capacity, handshakes, muc, relay, type ScenarioResult } from './scenarios';
import type { ServerKind } from './server-child';

/**
 * `npm run bench` (full, < 15 min), `npm run bench -- --quick` (about a minute), `--smoke` (seconds,
 * for the test). Also `--only relay,muc`, `--out DIR`, `--generators N`; `--profile`: both servers
 * under the V8 profiler, one process per scenario, summarised into PROFILE.md; `--report`: RESULTS.md
 * written again from the last results.json.
 */

const SCENARIO_RUNNERS: Record<ScenarioName, (h: Harness, plan: Options['plan'], tag: string) => Promise<ScenarioResult>> = {
  capacity,
  handshakes,
  relay,
  muc,
};

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
  const count: Record<ServerKind, number> = { ours: 0, baseline: 0 };
  for (const kind of options.plan.order) {
    const index = ++count[kind];
    const tag = `${kind === 'ours' ? 'JSONgle-Server' : 'baseline'}#${index}`;
    await h.startServer(kind);
    h.progress(`${tag} started at ${h.url}`);
    const run: RunResult = { kind, index, metrics: [], steps: [] };
    try {
      for (const scenario of options.only) {
        h.progress(`${tag} ${scenario}…`);
        const result = await SCENARIO_RUNNERS[scenario](h, options.plan, tag);
        run.metrics.push(...result.metrics);
        run.steps.push(...result.steps);
      }
    } finally {
      await h.stopServer();
    }
    runs.push(run);
    // Lets the sockets of the last run close before the next server starts.
    await sleep(500);
  }
  return runs;
}

async function profile(options: Options, h: Harness): Promise<string> {
  const dir = path.join(BENCH_DIR, 'out', 'profiles');
  mkdirSync(dir, { recursive: true });
  const sections: string[] = [];
  for (const scenario of options.only.filter((s) => s !== 'capacity')) {
    for (const kind of ['ours', 'baseline'] as const) {
      const file = path.join(dir, `${kind}-${scenario}.cpuprofile`);
      await h.startServer(kind);
      h.progress(`profiling ${kind} in ${scenario}`);
      try {
        await h.startProfile();
        await SCENARIO_RUNNERS[scenario](h, options.plan, `${kind}(profiled)`);
        await h.stopProfile(file);
      } finally {
        await h.stopServer();
      }
      sections.push(profileMarkdown(`${kind === 'ours' ? 'JSONgle-Server' : 'baseline'}, ${scenario}`, summarizeProfile(file)));
    }
  }
  return sections.join('\n');
}

/** Links to the profile and to the hand-written findings, when they are there. */
function notes(outDir: string): string | undefined {
  const links = [
    existsSync(path.join(outDir, 'FINDINGS.md'))
      ? 'what the numbers mean, the targets missed and the hot spots: [FINDINGS.md](FINDINGS.md)'
      : '',
    existsSync(path.join(outDir, 'PROFILE.md'))
      ? 'where the CPU goes, from `npm run bench -- --quick --profile`: [PROFILE.md](PROFILE.md)'
      : '',
  ].filter(Boolean);
  return links.length > 0 ? `See ${links.join('; ')}.` : undefined;
}

/** RESULTS.md, the chart and results.json; the rows are summarised again from the runs. */
async function writeReport(outDir: string, report: Report): Promise<void> {
  const full: Report = { ...report, rows: summarize(report.runs), profileNote: notes(outDir) };
  const chart = latencyChart(full.runs, 'P2P relay');
  if (chart) writeFileSync(path.join(outDir, CHART_FILE), chart);
  await writeFormatted(path.join(outDir, 'RESULTS.md'), markdown(full, chart ? CHART_FILE : undefined));
  await writeFormatted(path.join(outDir, 'results.json'), JSON.stringify(full));
  console.log('summary (JSONgle-Server / baseline = ratio):');
  const fmt = (n: number | undefined) => (n === undefined ? '–' : n.toFixed(2));
  for (const row of full.rows) {
    const ratio = row.ratio === undefined ? '' : ` = ${row.ratio.toFixed(2)}×`;
    console.log(
      `  ${row.scenario} | ${row.metric}: ${fmt(row.ours)} / ${fmt(row.baseline)}${ratio} ${row.verdict} ${row.flags.join('; ')}`,
    );
  }
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
          `same loads as the ${options.plan.mode} bench; noisy shared machine. Line numbers are those of the tsc output in bench/out/build.\n\n${text}`,
      );
      h.progress(`wrote ${file}`);
      return;
    }
    const runs = await compare(options, h);
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
    });
    h.progress(`wrote ${path.join(options.outDir, 'RESULTS.md')} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await h.stop();
  }
}

main().catch((error: unknown) => {
  console.error('bench failed:', error instanceof Error ? error.stack : error);
  process.exit(1);
});
