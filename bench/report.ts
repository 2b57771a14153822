import type { Setup } from './harness';
import { MAIN_PAIR, median, NOISY_CORES, REDIS_PAIR, type Report, type Row, type RunResult, type Step } from './results';

/** Writes bench/RESULTS.md and the latency-vs-load chart from a finished run. */

const num = (n: number | undefined): string => {
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

function summaryTable(rows: Row[], columns = ['JSONgle-Server', 'baseline']): string {
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

function stepTables(runs: RunResult[], pair: [Setup, Setup] = MAIN_PAIR): string {
  const groups = stepGroups(runs, pair);
  const cell = pair === MAIN_PAIR ? 'JSONgle-Server / baseline' : 'two processes through Redis / one process';
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

const runList = (runs: RunResult[]) =>
  runs.map((r) => `${r.kind === 'cluster' ? 'two processes' : r.kind === 'ours' ? 'one process' : r.kind}#${r.index}`).join(', ');

/** Scenario 5: two JSONgle-Server processes through Redis against one process. */
function redisSection(report: Report): string {
  const title = '## 5. P2P relay across two processes through Redis';
  const redis = report.redis;
  if (!redis) return `${title}\n\nNot run (\`--only\` left it out).`;
  if ('skipped' in redis) return `${title}\n\n**Not run:** ${redis.skipped}`;
  return `${title}

The P2P relay of scenario 3 (same rooms of 2, same message mix, same open-loop generator, same ramp rule) on two JSONgle-Server processes sharing a private \`redis-server\` (\`redisUrl=redis://127.0.0.1:<free port>\`: Redis registry and Socket.IO Redis adapter; \`reconnectGraceMs\` and the heartbeat at their defaults), against the same relay on one process with the in-memory registry (the default deployment). In the clustered runs the first member of every room connects to process A and the second to process B, so that every relayed message crosses Redis: the registry read of the room, then the adapter's PUBLISH to the other process (plus the registry's per-message scripts); the \`session-text\` receipt goes back to the sender on its own process.

- **Placement: the ${redis.processes} server processes and redis-server all pinned to core 0**, where the single process runs too; the generators keep core 1. So both setups get the same single core, and the ratio is what scaling out through Redis costs per message at equal hardware. One process per core was not an option on this 2-core machine: the second server would share the generators' core, so neither the generator-saturation flag nor the "other processes" accounting would hold, and the two setups would get different CPU budgets. On a machine with a core per process the clustered throughput would grow with the cores (the CPU per message below stays what it is) until redis-server's single thread is the limit: its own CPU per message is shown apart.
- "server CPU" in this section: the CPU time of both processes plus redis-server's (from /proc, 10 ms resolution), per message; RSS likewise summed; event-loop delay the worse of the two processes.
- redis-server (7.x from Debian) is started by the bench for each clustered run on a free loopback port (\`--bind 127.0.0.1 --save '' --appendonly no --maxmemory 256mb\`), stopped after it, and killed if the bench exits early.
- Runs interleaved ${runList(redis.runs)}; each number is the median of a setup's runs; ratio = two processes / one process; target ≥ 0.5× one process (issue #8).

${summaryTable(redis.rows, ['two processes + Redis', 'one process'])}

${stepTables(redis.runs, REDIS_PAIR)}`;
}

/** How busy the rest of the machine was: the load averages and what every step recorded. */
function noiseNote(report: Report): string {
  const { machine } = report;
  const redisRuns = report.redis && 'runs' in report.redis ? report.redis.runs : [];
  const other = [...report.runs, ...redisRuns].flatMap((r) => r.steps.map((s) => s.otherCores ?? 0));
  const worst = Math.max(0, ...other);
  const noisy = other.filter((o) => o >= NOISY_CORES).length;
  const load = `load average ${machine.loadStart.map((l) => l.toFixed(2)).join(' ')} at the start, ${machine.loadEnd.map((l) => l.toFixed(2)).join(' ')} at the end`;
  const common = `Every step records how many cores the rest of the machine used meanwhile ("other processes"), and a summary row taken with more than ${NOISY_CORES} of a core of it says so.`;
  if (noisy === 0)
    return `> **Quiet machine.** ${load}; the rest of the machine never used more than ${worst.toFixed(2)} of a core during a step. ${common}`;
  return `> **Noisy numbers.** This machine has ${machine.cpus} cores and is shared (other engineers run jest and servers of their own on it): ${load}; ${noisy} of ${other.length} steps had other processes using ${NOISY_CORES} of a core or more (up to ${worst.toFixed(1)} cores). The server and the generators had a core each only from \`taskset\`'s point of view: other processes ran on those cores too. ${common} Read the ratios rather than the absolute numbers, trust the server's own CPU time per message more than latency, look at the flags, and rerun on a quiet machine before drawing conclusions from a gap of less than ~20 %.`;
}

export function markdown(report: Report, chartFile: string | undefined): string {
  const { machine } = report;
  const runs = report.runs.map((r) => `${r.kind}#${r.index}`).join(', ');
  return `# JSONgle-Server benchmarks (issue #8)

Generated by \`${report.command}\` on ${report.date} (${report.mode} mode, ${report.durationS.toFixed(0)} s). Regenerate it with \`npm run bench\` (full, under 15 minutes) or \`npm run bench -- --quick\` (two to three minutes on this machine; its numbers are for a quick look, the full run's are the ones to quote).

${noiseNote(report)}

**Machine:** ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGb.toFixed(1)} GB memory, Node ${machine.node}, ${machine.os}.

## How it is measured

- Server under test alone in a child process pinned to core 0 (\`taskset -c 0\`); ${report.generators} load-generator processes (socket.io-client) pinned to core 1; loopback only (127.0.0.1), plain HTTP (\`useHTTPS=false\`) for both servers.
- Baseline (\`bench/baseline-server.ts\`): bare Socket.IO 4.8 with our options (pingInterval/pingTimeout, maxHttpBufferSize, serveClient false, CORS off), relaying \`jsongle\` events to the sender's Socket.IO room with no protocol logic; it answers a minimal session-hello and join so that one generator code path drives both servers.
- Runs interleaved ${runs}; each number is the median of a server's runs; ratio = JSONgle-Server / baseline.
- Open-loop schedule: message k is due at start + k/rate; one-way latency is measured at the receiver from the due time stamped in the payload (\`process.hrtime.bigint()\`), so a late sender counts against latency (no coordinated omission).
- "Sustained": the highest offered load of a ramp whose p99 one-way latency stays ≤ 50 ms with ≥ 99 % delivered; the ramp stops at the first step that fails twice in a row (one retry absorbs a burst of someone else's load). The fixed-load step is measured again once when other processes used more than ${NOISY_CORES} of a core meanwhile, and the quieter of the two counts.
- Generator utilisation (worst event-loop utilisation of a generator process, or the generators' CPU time over wall time on their shared core) is recorded at every step; a metric taken with it above 0.8 is flagged and gets no ratio.
- "CPU-bound ceiling": 1 / (server CPU time per message) at the highest ramp step that every run reached, i.e. what one fully busy core could relay at that batching; an upper bound, but it depends on the server's own CPU time only, not on the latency that other processes on this machine disturb.
- Server CPU time (\`process.cpuUsage\` in the server process, over IPC), RSS, heap (after a forced GC for the capacity steps) and event-loop delay p99 (\`monitorEventLoopDelay\`) at every step.
- Both servers and the generators run compiled (\`bench/out/build/<pid>\`, like \`node dist/index.js\`; no tsx loader in them) by the TypeScript compiler file by file, the same output as tsc under the project's \`isolatedModules\` (type-checking is \`npm run lint\`'s job); JSONgle-Server is built from the current \`src/\` with the production defaults of \`.env.defaults\` except: \`useHTTPS=false\`, \`maxConcurrentUsers\` and \`maxConnectionsPerAddress\` 100000 (one client address), \`maxMembersPerMultiRoom=50\`, \`maxMessagesPerSecond=1000\` (the limiter still runs on every message; the generator stays below it). Its log file stays at debug, as in production.
- P2P messages alternate \`transport-info\` (an ICE candidate) and \`session-text\`; JSONgle-Server also sends the sender a delivery receipt for each \`session-text\` (PROTOCOL.md §5), which the baseline does not.

## Summary

${summaryTable(report.rows)}

${chartFile ? `![one-way latency vs offered load, P2P relay](${chartFile})\n` : ''}
## Steps

${stepTables(report.runs)}

${redisSection(report)}

## Second baseline (PeerJS server) — not run

The issue suggests the \`peer\` npm package as a second baseline for handshakes and 1:1 relay "where it fits"; it speaks its own WebSocket protocol rather than Socket.IO, so it needs its own client in the generator. Not done in this harness.
${report.profileNote ? `\n## Profile\n\n${report.profileNote}\n` : ''}`;
}

/** A hand-drawn SVG: p50 and p99 one-way latency (log scale) against offered load, both servers. */
export function latencyChart(runs: RunResult[], scenario: string): string | undefined {
  const groups = stepGroups(runs).filter((g) => g.scenario === scenario);
  if (groups.length === 0) return undefined;
  const W = 760;
  const H = 420;
  const left = 70;
  const right = 170;
  const top = 40;
  const bottom = 60;
  const xs = groups.map((g) => g.x);
  const xMax = Math.max(...xs) * 1.05;
  const series = (['ours', 'baseline'] as const).flatMap((kind) =>
    (['p50Ms', 'p99Ms'] as const).map((q) => ({
      kind,
      q,
      points: groups
        .map((g) => ({ x: g.x, y: median(g[kind].map((s) => s[q]).filter((v): v is number => v !== undefined)) }))
        .filter((p) => Number.isFinite(p.y) && p.y > 0)
        .sort((a, b) => a.x - b.x),
    })),
  );
  const ys = series.flatMap((s) => s.points.map((p) => p.y));
  const yMin = 10 ** Math.floor(Math.log10(Math.max(0.01, Math.min(...ys, 1))));
  const yMax = 10 ** Math.ceil(Math.log10(Math.max(...ys, 100)));
  const round = (n: number) => Math.round(n * 10) / 10;
  const px = (x: number) => round(left + (x / xMax) * (W - left - right));
  const py = (y: number) =>
    round(top + (1 - (Math.log10(y) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * (H - top - bottom));
  const colour = { ours: '#d1495b', baseline: '#00798c' };
  const parts: string[] = [];
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`);
  parts.push(
    `<text x="${W / 2 - right / 2}" y="22" text-anchor="middle" font-size="15">${scenario}: one-way latency vs offered load</text>`,
  );
  for (let d = Math.log10(yMin); d <= Math.log10(yMax); d++) {
    const y = py(10 ** d);
    parts.push(`<line x1="${left}" x2="${W - right}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    parts.push(
      `<text x="${left - 8}" y="${y + 4}" text-anchor="end" font-size="11">${10 ** d >= 1 ? 10 ** d : (10 ** d).toFixed(-d)} ms</text>`,
    );
  }
  const xStep = 10 ** Math.floor(Math.log10(xMax / 2)) * (xMax / 10 ** Math.floor(Math.log10(xMax)) > 5 ? 2 : 1);
  for (let x = 0; x <= xMax; x += xStep) {
    parts.push(`<line x1="${px(x)}" x2="${px(x)}" y1="${top}" y2="${H - bottom}" stroke="#eee"/>`);
    parts.push(`<text x="${px(x)}" y="${H - bottom + 16}" text-anchor="middle" font-size="11">${x.toLocaleString('en-US')}</text>`);
  }
  parts.push(`<text x="${(left + W - right) / 2}" y="${H - 18}" text-anchor="middle" font-size="12">${groups[0]?.xLabel ?? ''}</text>`);
  parts.push(`<rect x="${left}" y="${top}" width="${W - left - right}" height="${H - top - bottom}" fill="none" stroke="#888"/>`);
  const limit = py(50);
  parts.push(`<line x1="${left}" x2="${W - right}" y1="${limit}" y2="${limit}" stroke="#999" stroke-dasharray="2 4"/>`);
  parts.push(`<text x="${W - right - 4}" y="${limit - 4}" text-anchor="end" font-size="10" fill="#666">p99 limit 50 ms</text>`);
  series.forEach((s, i) => {
    const dash = s.q === 'p50Ms' ? ' stroke-dasharray="6 4"' : '';
    const path = s.points.map((p, j) => `${j === 0 ? 'M' : 'L'}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
    if (path) parts.push(`<path d="${path}" fill="none" stroke="${colour[s.kind]}" stroke-width="2"${dash}/>`);
    for (const p of s.points) parts.push(`<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="3" fill="${colour[s.kind]}"/>`);
    const ly = top + 10 + i * 20;
    parts.push(
      `<line x1="${W - right + 12}" x2="${W - right + 42}" y1="${ly}" y2="${ly}" stroke="${colour[s.kind]}" stroke-width="2"${dash}/>`,
    );
    const name = s.kind === 'ours' ? 'JSONgle-Server' : 'baseline';
    parts.push(`<text x="${W - right + 48}" y="${ly + 4}" font-size="11">${name} ${s.q === 'p50Ms' ? 'p50' : 'p99'}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n${parts.join('\n')}\n</svg>\n`;
}
