import { stepGroups, stepTables, summaryTable } from './report-tables';
import { median, NOISY_CORES, PEERJS_PAIR, REDIS_PAIR, type Report, type RunResult } from './results';

/** Writes bench/RESULTS.md and the latency-vs-load chart from a finished run. */

const runList = (runs: RunResult[]) =>
  runs.map((r) => `${r.kind === 'cluster' ? 'two processes' : r.kind === 'ours' ? 'one process' : r.kind}#${r.index}`).join(', ');

/** Scenario 5: two JSONgle-Server processes through Redis against one process. */
function redisSection(report: Report): string {
  const title = '## 5. P2P relay across two processes through Redis';
  const redis = report.redis;
  if (!redis) return `${title}\n\nNot run (\`--only\` left it out).`;
  if ('skipped' in redis) return `${title}\n\n**Not run:** ${redis.skipped}`;
  return `${title}

The P2P relay of scenario 3 (same rooms of 2, same message mix, same open-loop generator, same ramp rule) on two JSONgle-Server processes sharing a private \`redis-server\` (\`redisUrl=redis://127.0.0.1:<free port>\`: Redis registry and Socket.IO Redis adapter; \`reconnectGraceMs\` and the heartbeat at their defaults), against the same relay on one process with the in-memory registry (the default deployment). In the clustered runs the first member of every room connects to process A and the second to process B, so that every relayed message crosses Redis: the adapter's PUBLISH to the other process, and nothing else (each process keeps the rooms it relays in and the held sessions from the registry's \`changes\` channel, src/registry/room-cache.ts); the \`session-text\` receipt goes back to the sender on its own process.

- **Placement: the ${redis.processes} server processes and redis-server all pinned to core 0**, where the single process runs too; the generators keep core 1. So both setups get the same single core, and the ratio is what scaling out through Redis costs per message at equal hardware. One process per core was not an option on this 2-core machine: the second server would share the generators' core, so neither the generator-saturation flag nor the "other processes" accounting would hold, and the two setups would get different CPU budgets. On a machine with a core per process the clustered throughput would grow with the cores (the CPU per message below stays what it is) until redis-server's single thread is the limit: its own CPU per message is shown apart.
- "server CPU" in this section: the CPU time of both processes plus redis-server's (from /proc, 10 ms resolution), per message; RSS likewise summed; event-loop delay the worse of the two processes.
- redis-server (7.x from Debian) is started by the bench for each clustered run on a free loopback port (\`--bind 127.0.0.1 --save '' --appendonly no --maxmemory 256mb\`), stopped after it, and killed if the bench exits early.
- Runs interleaved ${runList(redis.runs)}; each number is the median of a setup's runs; ratio = two processes / one process; target ≥ 0.5× one process (issue #8).

${summaryTable(redis.rows, ['two processes + Redis', 'one process'])}

${stepTables(redis.runs, REDIS_PAIR, 'two processes through Redis / one process')}`;
}

/** The second baseline: JSONgle-Server against the PeerJS server, in the scenarios that fit it. */
function peerjsSection(report: Report): string {
  const title = '## JSONgle-Server vs PeerJS (second baseline: handshakes and 1:1 relay)';
  const peerjsRuns = report.runs.filter((r) => r.kind === 'peerjs');
  if (!report.peerjs || peerjsRuns.length === 0)
    return `${title}\n\nNot run (\`--no-peerjs\`, or \`--only\` left out both handshakes and relay).`;
  const scenarios = new Set(peerjsRuns.flatMap((r) => r.steps.map((s) => s.scenario)));
  // The JSONgle-Server runs' steps of those scenarios only, for the step tables.
  const runs = report.runs
    .filter((r) => PEERJS_PAIR.includes(r.kind))
    .map((r) => ({ ...r, steps: r.steps.filter((s) => scenarios.has(s.scenario)) }));
  const rampOf = (kind: string) =>
    [
      ...new Set(
        report.runs.filter((r) => r.kind === kind).flatMap((r) => r.steps.filter((s) => s.scenario === 'P2P relay').map((s) => s.x)),
      ),
    ]
      .sort((a, b) => a - b)
      .map((x) => x.toLocaleString('en-US'))
      .join(', ');
  const ramp = scenarios.has('P2P relay')
    ? ` Ramp steps reached: JSONgle-Server ${rampOf('ours')}; PeerJS ${rampOf('peerjs')} (PeerJS's ramp has the same steps at the bottom and fewer above 8,000/s in the full run, to keep it within 15 minutes).`
    : '';
  return `${title}

The PeerJS server (npm \`peer\` 1.x, \`bench/peerjs-server.ts\`) started as its README starts it, \`PeerServer({ port, key: 'peerjs' })\`, with \`concurrent_limit\` raised from 5,000 to 100,000 as our capacity limits are; alone in its child process pinned to core 0 like the other servers. The same generator processes (core 1) speak PeerJS's WebSocket protocol with \`ws\` (\`bench/peerjs-client.ts\`), as the peerjs 1.x browser client does. Only the scenarios that fit it: PeerJS has no rooms of more than two, no hello or capacity gate, and no Redis mode.

- **A PeerJS handshake is WebSocket connect + \`{"type":"OPEN"}\`: no hello and no room join** (the peer id and a token are in the URL, given by the client, so no \`GET /peerjs/id\` either; the pair exists only in the generator). JSONgle-Server's is connect + session-hello + session-join (the Engine.IO/Socket.IO handshake and two round trips). The handshake rows compare each server's whole path from nothing to a client that can relay.
- **1:1 relay:** the same number of pairs as the P2P relay's rooms of 2; every message is a \`CANDIDATE\` to the other peer of the pair carrying the same ICE candidate (candidate string, sdpMid, sdpMLineIndex) and the same due-time stamp and run id as JSONgle-Server's \`transport-info\`, in the shape peerjs sends (\`payload: {candidate, type: 'media', connectionId}\`): about 320 bytes sent and 340 delivered (PeerJS adds \`src\`), against about 370 bytes for JSONgle-Server's \`transport-info\` and 230 for its \`session-text\`. The JSONgle-Server runs are the very runs of the tables above: they alternate \`transport-info\` and \`session-text\` and the server sends a receipt for each \`session-text\`, which PeerJS has no counterpart for (its data channels are peer to peer).
- Each PeerJS peer sends \`{"type":"HEARTBEAT"}\` every 5 s, as the peerjs client does by default (e.g. 200/s at 500 pairs beside 2,000 relayed messages/s): part of the PeerJS server's CPU time, not counted as messages. Socket.IO's own ping every 25 s is likewise part of JSONgle-Server's.
- Same offered loads, same open-loop generator, same "sustained" rule, same CPU-bound ceiling (at the highest ramp step every JSONgle-Server and PeerJS run reached), same saturation flag.${ramp}
- Runs interleaved with the others (${runs.map((r) => `${r.kind === 'ours' ? 'JSONgle-Server' : 'PeerJS'}#${r.index}`).join(', ')}); each number is the median of a server's runs; ratio = JSONgle-Server / PeerJS. No targets: issue #8 sets its targets against the Socket.IO baseline.

${summaryTable(report.peerjs.rows, ['JSONgle-Server', 'PeerJS'])}

${stepTables(runs, PEERJS_PAIR, 'JSONgle-Server / PeerJS')}`;
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
- Runs interleaved ${runs}; each number is the median of a server's runs; ratio = JSONgle-Server / baseline. The PeerJS runs have [their own section](#jsongle-server-vs-peerjs-second-baseline-handshakes-and-11-relay).
- Open-loop schedule: message k is due at start + k/rate; one-way latency is measured at the receiver from the due time stamped in the payload (\`process.hrtime.bigint()\`), so a late sender counts against latency (no coordinated omission).
- "Sustained": the highest offered load of a ramp whose p99 one-way latency stays ≤ 50 ms with ≥ 99 % delivered; the ramp stops at the first step that fails twice in a row (one retry absorbs a burst of someone else's load). The fixed-load step is measured again once when other processes used more than ${NOISY_CORES} of a core meanwhile, and the quieter of the two counts.
- Generator utilisation (worst event-loop utilisation of a generator process, or the generators' CPU time over wall time on their shared core) is recorded at every step; a metric taken with it above 0.8 is flagged and gets no ratio.
- "CPU-bound ceiling": 1 / (server CPU time per message) at the highest ramp step that every run reached, i.e. what one fully busy core could relay at that batching; an upper bound, but it depends on the server's own CPU time only, not on the latency that other processes on this machine disturb.
- Server CPU time (\`process.cpuUsage\` in the server process, over IPC), RSS, heap (after a forced GC for the capacity steps) and event-loop delay p99 (\`monitorEventLoopDelay\`) at every step.
- Both servers and the generators run compiled (\`bench/out/build/<pid>\`, like \`node dist/index.js\`; no tsx loader in them) by the TypeScript compiler file by file, the same output as tsc under the project's \`isolatedModules\` (type-checking is \`npm run lint\`'s job); JSONgle-Server is built from the current \`src/\` with the production defaults of \`.env.defaults\` except: \`useHTTPS=false\`, \`maxConcurrentUsers\` and \`maxConnectionsPerAddress\` 100000 (one client address), \`maxMembersPerMultiRoom=50\`, \`maxMessagesPerSecond=1000\` (the limiter still runs on every message; the generator stays below it). Its log file keeps the production level of \`.env.defaults\` (\`logFileLevel\`).
- P2P messages alternate \`transport-info\` (an ICE candidate) and \`session-text\`; JSONgle-Server also sends the sender a delivery receipt for each \`session-text\` (PROTOCOL.md §5), which the baseline does not.

## Summary

${summaryTable(report.rows)}

${chartFile ? `![one-way latency vs offered load, P2P relay](${chartFile})\n` : ''}
## Steps

${stepTables(report.runs)}

${redisSection(report)}

${peerjsSection(report)}
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
