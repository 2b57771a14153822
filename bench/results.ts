import type { Setup } from './harness';

/** What a bench run measures, and how runs of both servers are folded into medians and ratios. */

/** Scenario 5 (issue #8): the P2P relay through Redis on two processes, against one process. */
export const REDIS_SCENARIO = 'Redis scale-out, P2P relay';

export interface Target {
  /** ours / baseline must be `op` this ratio (issue #8's targets). */
  op: '>=' | '<=';
  ratio: number;
}

export interface Metric {
  scenario: string;
  metric: string;
  value: number;
  /** Taken while a generator was above 0.8 utilisation: shown, but not as a ratio. */
  generatorSaturated: boolean;
  target?: Target;
  /** A lower bound only: the ramp ended before the server failed. */
  atLeast?: boolean;
  /** Cores other processes of the machine used while it was measured. */
  otherCores?: number;
}

export interface Step {
  scenario: string;
  /** x of the step: offered messages (or deliveries) per second, or connections held. */
  x: number;
  xLabel: string;
  p50Ms?: number;
  p99Ms?: number;
  p999Ms?: number;
  delivered?: number;
  passed?: boolean;
  /** CPU time of the server process (a cluster: both processes and redis-server) per 1,000 messages. */
  serverCpuMsPer1000?: number;
  /** A cluster's redis-server's part of serverCpuMsPer1000. */
  redisCpuMsPer1000?: number;
  serverEldP99Ms: number;
  serverRssMb: number;
  serverHeapMb: number;
  generatorUtil: number;
  /** Cores other processes of the machine used during the step. */
  otherCores?: number;
  /** The step failed once and was run again (a shared machine has bursts of load). */
  retried?: boolean;
}

export interface RunResult {
  /** ours / baseline / peerjs: one server process; cluster: two JSONgle-Server processes sharing a redis-server. */
  kind: Setup;
  index: number;
  metrics: Metric[];
  steps: Step[];
}

export interface Row {
  scenario: string;
  metric: string;
  /** The median of the runs under test: JSONgle-Server (scenario 5: two processes through Redis). */
  ours?: number;
  /** The median of the reference runs: the bare Socket.IO baseline, or PeerJS (scenario 5: one JSONgle-Server process). */
  baseline?: number;
  /** ours / baseline. */
  ratio?: number;
  target?: Target;
  /** met, missed, or why there is no verdict. */
  verdict: string;
  flags: string[];
}

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGb: number;
  node: string;
  os: string;
  loadStart: number[];
  loadEnd: number[];
}

export interface Report {
  mode: string;
  date: string;
  command: string;
  durationS: number;
  machine: Machine;
  generators: number;
  rows: Row[];
  runs: RunResult[];
  /** Scenario 5, compared apart: its runs (ours = one process, cluster = two through Redis) and its rows. */
  redis?: { runs: RunResult[]; rows: Row[]; processes: number } | { skipped: string };
  /** JSONgle-Server against PeerJS, from the runs of both in `runs`: ours = JSONgle-Server, baseline = PeerJS. */
  peerjs?: { rows: Row[] };
  profileNote?: string;
}

/** What each comparison sets against what: the runs under test first, the reference second. */
export const MAIN_PAIR: [Setup, Setup] = ['ours', 'baseline'];
export const REDIS_PAIR: [Setup, Setup] = ['cluster', 'ours'];
export const PEERJS_PAIR: [Setup, Setup] = ['ours', 'peerjs'];

/** Above this much CPU used by other processes during a measure, its row says so. */
export const NOISY_CORES = 0.3;

export function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/**
 * The server's own CPU time per message does not depend on how busy the rest of the machine is,
 * unlike latency: at the highest step of a ramp that every run reached, it gives a noise-robust
 * estimate of the throughput each server could sustain on one core (1 / CPU time per message).
 */
function cpuBoundMetrics(run: RunResult, runs: RunResult[]): Metric[] {
  const scenarios = [...new Set(runs.flatMap((r) => r.steps.map((s) => s.scenario)))].filter(
    (s) => s === 'P2P relay' || s === REDIS_SCENARIO || s.startsWith('MUC fan-out'),
  );
  const handshake = run.steps.find((s) => s.scenario === 'handshakes')?.serverCpuMsPer1000;
  const handshakes: Metric[] = handshake
    ? [
        {
          scenario: 'handshakes',
          metric: 'CPU-bound ceiling, handshakes/s on one core (from CPU time at saturation)',
          value: 1e6 / handshake,
          generatorSaturated: false,
          target: { op: '>=', ratio: 0.8 },
        },
      ]
    : [];
  return handshakes.concat(
    scenarios.flatMap((scenario) => {
      const reached = runs.map((r) => new Set(r.steps.filter((s) => s.scenario === scenario).map((s) => s.x)));
      const common = [...(reached[0] ?? [])].filter((x) => reached.every((set) => set.has(x)));
      const x = Math.max(...common);
      const step = run.steps.find((s) => s.scenario === scenario && s.x === x);
      if (!step?.serverCpuMsPer1000) return [];
      const unit = scenario.startsWith('MUC') ? 'deliveries' : 'messages';
      const redis: Metric[] =
        step.redisCpuMsPer1000 === undefined
          ? []
          : [
              {
                scenario,
                metric: `of which redis-server, per 1,000 ${unit} at ${x}/s (ms)`,
                value: step.redisCpuMsPer1000,
                generatorSaturated: false,
              },
            ];
      return [
        { scenario, metric: `server CPU per 1,000 ${unit} at ${x}/s (ms)`, value: step.serverCpuMsPer1000, generatorSaturated: false },
        ...redis,
        {
          scenario,
          metric: `CPU-bound ceiling, ${unit}/s on one core (from CPU time at ${x}/s)`,
          value: 1e6 / step.serverCpuMsPer1000,
          generatorSaturated: false,
          target: { op: '>=', ratio: scenario === REDIS_SCENARIO ? 0.5 : 0.9 },
        },
      ];
    }),
  );
}

/**
 * One row per (scenario, metric): the median of each side's runs and their ratio; `pair` names the
 * runs under test and the reference (JSONgle-Server and the baseline, or two processes and one).
 */
export function summarize(measured: RunResult[], pair: [Setup, Setup] = MAIN_PAIR): Row[] {
  const [tested, reference] = pair;
  // Only the pair's runs: the step every run reached (cpuBoundMetrics) is a step both sides reached.
  const paired = measured.filter((run) => pair.includes(run.kind));
  const runs = paired.map((run) => ({ ...run, metrics: [...run.metrics, ...cpuBoundMetrics(run, paired)] }));
  const keys: { scenario: string; metric: string }[] = [];
  const seen = new Set<string>();
  for (const run of runs) {
    for (const m of run.metrics) {
      const key = `${m.scenario}\u0000${m.metric}`;
      if (!seen.has(key)) keys.push({ scenario: m.scenario, metric: m.metric });
      seen.add(key);
    }
  }
  // Derived rows come last in each run: keep every scenario's rows together, in order of appearance.
  const order = [...new Set(keys.map((k) => k.scenario))];
  keys.sort((a, b) => order.indexOf(a.scenario) - order.indexOf(b.scenario));
  return keys.map(({ scenario, metric }) => {
    const of = (kind: Setup) =>
      runs.flatMap((r) => (r.kind === kind ? r.metrics.filter((m) => m.scenario === scenario && m.metric === metric) : []));
    const mine = of(tested);
    const theirs = of(reference);
    const ours = mine.length > 0 ? median(mine.map((m) => m.value)) : undefined;
    const baseline = theirs.length > 0 ? median(theirs.map((m) => m.value)) : undefined;
    const target = [...mine, ...theirs].find((m) => m.target)?.target;
    const flags: string[] = [];
    const saturated = [...mine, ...theirs].some((m) => m.generatorSaturated);
    if (saturated) flags.push('generator > 0.8');
    const other = Math.max(0, ...[...mine, ...theirs].map((m) => m.otherCores ?? 0));
    if (other >= NOISY_CORES) flags.push(`other processes busy: up to ${other.toFixed(1)} cores`);
    const name = (kind: Setup) => (kind === 'cluster' ? 'two processes' : pair.includes('cluster') ? 'one process' : kind);
    if (mine.some((m) => m.atLeast)) flags.push(`${name(tested)}: ≥ (ramp top reached)`);
    if (theirs.some((m) => m.atLeast)) flags.push(`${name(reference)}: ≥ (ramp top reached)`);
    const ratio = ours !== undefined && baseline !== undefined && baseline !== 0 && !saturated ? ours / baseline : undefined;
    let verdict = '';
    if (target) {
      if (saturated) verdict = 'no verdict (generator saturated)';
      // A latency or a rate taken while other processes held the cores says more about them than about us.
      else if (other >= NOISY_CORES) verdict = 'no verdict (machine busy)';
      else if (ratio === undefined || !Number.isFinite(ratio)) verdict = 'no verdict';
      else verdict = (target.op === '>=' ? ratio >= target.ratio : ratio <= target.ratio) ? 'met' : 'missed';
    }
    return { scenario, metric, ours, baseline, ratio, target, verdict, flags };
  });
}

/**
 * JSONgle-Server against PeerJS: the rows of the scenarios PeerJS ran, with no target or verdict
 * (issue #8 sets its targets against the Socket.IO baseline only).
 */
export function summarizePeerjs(runs: RunResult[]): Row[] {
  if (!runs.some((run) => run.kind === 'peerjs')) return [];
  return summarize(runs, PEERJS_PAIR)
    .filter((row) => row.baseline !== undefined)
    .map((row) => ({
      ...row,
      metric: row.metric.replace('connect+hello+join', 'handshakes (JSONgle-Server: connect+hello+join; PeerJS: connect+OPEN)'),
      target: undefined,
      verdict: '',
    }));
}
