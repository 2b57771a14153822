import type { Setup } from './harness';
import { MAIN_PAIR, median, type Row, type RunResult, type Step } from './results';

/** The tables of RESULTS.md: a summary table of rows, and per-step tables of a pair of setups. */

export const num = (n: number | undefined): string => {
  if (n === undefined || !Number.isFinite(n)) return '–';
  const abs = Math.abs(n);
  if (abs >= 1000) return Math.round(n).toLocaleString('en-US');
  if (abs >= 100) return n.toFixed(0);
  if (abs >= 10) return n.toFixed(1);
  return n.toFixed(2);
};

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function summaryTable(rows: Row[], columns = ['JSONgle-Server', 'baseline']): string {
  return table(
    ['scenario', 'metric', ...columns, 'ratio', 'target', 'verdict', 'flags'],
    rows.map((r) => [
      r.scenario,
      r.metric,
      num(r.ours),
      num(r.baseline),
      r.ratio === undefined ? '–' : `${r.ratio.toFixed(2)}×`,
      r.target ? `${r.target.op} ${r.target.ratio}×` : '',
      r.verdict,
      r.flags.join('; '),
    ]),
  );
}

interface StepGroup {
  scenario: string;
  xLabel: string;
  x: number;
  /** Steps of the runs under test (JSONgle-Server, or two processes through Redis). */
  ours: Step[];
  /** Steps of the reference runs (the baseline, or one process). */
  baseline: Step[];
}

/** The steps of all runs, grouped by scenario and x, so that each cell is a median over runs. */
export function stepGroups(runs: RunResult[], pair: [Setup, Setup] = MAIN_PAIR): StepGroup[] {
  const groups = new Map<string, StepGroup>();
  for (const run of runs) {
    const side = run.kind === pair[0] ? 'ours' : run.kind === pair[1] ? 'baseline' : undefined;
    if (!side) continue;
    for (const step of run.steps) {
      const key = `${step.scenario}\u0000${step.x}`;
      // Handshake steps have a measured x; one group per scenario is enough there.
      const groupKey = step.scenario === 'handshakes' ? step.scenario : key;
      const group = groups.get(groupKey) ?? { scenario: step.scenario, xLabel: step.xLabel, x: step.x, ours: [], baseline: [] };
      group[side].push(step);
      groups.set(groupKey, group);
    }
  }
  return [...groups.values()];
}

/** `cell` says what each cell holds: the runs under test / the reference runs. */
export function stepTables(runs: RunResult[], pair: [Setup, Setup] = MAIN_PAIR, cell = 'JSONgle-Server / baseline'): string {
  const groups = stepGroups(runs, pair);
  const scenarios = [...new Set(groups.map((g) => g.scenario))];
  const m = (steps: Step[], pick: (s: Step) => number | undefined) =>
    num(median(steps.map(pick).filter((v): v is number => v !== undefined)));
  const both = (g: StepGroup, pick: (s: Step) => number | undefined) => `${m(g.ours, pick)} / ${m(g.baseline, pick)}`;
  return scenarios
    .map((scenario) => {
      const rows = groups.filter((g) => g.scenario === scenario);
      const xLabel = rows[0]?.xLabel ?? 'x';
      const hasLatency = rows.some((g) => [...g.ours, ...g.baseline].some((s) => s.p99Ms !== undefined));
      const hasRedis = rows.some((g) => g.ours.some((s) => s.redisCpuMsPer1000 !== undefined));
      const header = [
        xLabel,
        ...(hasLatency ? ['p50 ms', 'p99 ms', 'p999 ms', 'delivered %', 'passed (runs)'] : []),
        'server CPU ms/1000',
        ...(hasRedis ? ['of which redis-server'] : []),
        'server EL p99 ms',
        'server RSS MB',
        'server heap MB',
        'generator util',
        'other processes, cores',
      ];
      const body = rows.map((g) => [
        scenario === 'handshakes' ? both(g, (s) => s.x) : num(g.x),
        ...(hasLatency
          ? [
              both(g, (s) => s.p50Ms),
              both(g, (s) => s.p99Ms),
              both(g, (s) => s.p999Ms),
              both(g, (s) => (s.delivered === undefined ? undefined : s.delivered * 100)),
              `${g.ours.filter((s) => s.passed).length}/${g.ours.length} / ${g.baseline.filter((s) => s.passed).length}/${g.baseline.length}`,
            ]
          : []),
        both(g, (s) => s.serverCpuMsPer1000),
        ...(hasRedis ? [`${m(g.ours, (s) => s.redisCpuMsPer1000)} / –`] : []),
        both(g, (s) => s.serverEldP99Ms),
        both(g, (s) => s.serverRssMb),
        both(g, (s) => s.serverHeapMb),
        both(g, (s) => s.generatorUtil),
        both(g, (s) => s.otherCores),
      ]);
      return `### ${scenario}\n\nEach cell: ${cell}, median over the runs that reached the step. "passed": runs whose p99 stayed ≤ 50 ms with ≥ 99 % delivered (a failed step is run once more before a ramp ends; the second try counts). "other processes": CPU the rest of the machine used meanwhile (from /proc), in cores.\n\n${table(header, body)}`;
    })
    .join('\n\n');
}
