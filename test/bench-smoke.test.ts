import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Report, Row } from '../bench/results';

const PROJECT_ROOT = path.join(__dirname, '..');
/** Scenario 5 needs Debian's redis-server (CI installs it); elsewhere the report says it was skipped. */
const hasRedis = spawnSync('/usr/bin/redis-server', ['--version']).status === 0;

/**
 * The benchmark's smallest pieces (issue #8): `bench/run.ts --smoke` drives both servers through
 * every scenario, and the PeerJS server through handshakes and the 1:1 relay, and writes a well-formed report. Its numbers are not checked: no timed assertions.
 */
describe('bench --smoke', () => {
  const outDir = mkdtempSync(path.join(tmpdir(), 'jsongle-bench-'));
  let report: Report;
  let output = '';

  beforeAll(() => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', path.join('bench', 'run.ts'), '--smoke', '--out', outDir], {
      cwd: PROJECT_ROOT,
      encoding: 'utf8',
      timeout: 110_000,
    });
    output = `${run.stdout}${run.stderr}`;
    if (run.status !== 0) throw new Error(`bench --smoke failed (${String(run.status ?? run.signal)}):\n${output}`);
    report = JSON.parse(readFileSync(path.join(outDir, 'results.json'), 'utf8')) as Report;
  }, 120_000);

  afterAll(() => rmSync(outDir, { recursive: true, force: true }));

  test('runs both servers through every scenario, and PeerJS through those that fit it, with progress lines', () => {
    expect(report.runs.map((r) => r.kind)).toEqual(['ours', 'baseline', 'peerjs']);
    const peerjs = new Set(report.runs[2]?.steps.map((s) => s.scenario));
    expect([...peerjs].sort()).toEqual(['P2P relay', 'P2P relay (fixed)', 'handshakes']);
    const scenarios = new Set(report.rows.map((r) => r.scenario));
    for (const scenario of ['capacity', 'handshakes', 'P2P relay', 'MUC fan-out, rooms of 10']) expect(scenarios).toContain(scenario);
    expect(output).toMatch(/^\[\d\d:\d\d\] .*P2P relay/m);
  });

  const wellFormed = (row: Row) => {
    expect(typeof row.ours).toBe('number');
    if (row.metric.startsWith('of which redis-server')) return; // the one process has no redis-server
    expect(typeof row.baseline).toBe('number');
    if (row.ratio !== undefined) expect(row.ratio).toBeCloseTo((row.ours ?? NaN) / (row.baseline ?? NaN), 6);
    else expect(row.flags.length > 0 || row.baseline === 0 || !Number.isFinite(row.ours)).toBe(true);
  };

  test('every row has a number for both servers, and a ratio unless flagged', () => {
    for (const row of report.rows) wellFormed(row);
    const held = report.rows.find((r) => r.scenario === 'capacity' && r.metric.startsWith("hello'd connections held"));
    expect(held).toMatchObject({ ours: 100, baseline: 100 });
  });

  test('the second baseline: JSONgle-Server against PeerJS in handshakes and the 1:1 relay', () => {
    const rows = report.peerjs?.rows ?? [];
    expect(new Set(rows.map((r) => r.scenario))).toEqual(new Set(['handshakes', 'P2P relay']));
    for (const row of rows) wellFormed(row);
    const metrics = rows.map((r) => r.metric);
    expect(metrics).toContain('sustained messages/s (p99 ≤ 50 ms)');
    expect(metrics).toContain('server CPU per 1,000 handshakes (ms)');
    expect(metrics.some((m) => m.includes('PeerJS: connect+OPEN'))).toBe(true);
    // Relayed CANDIDATE messages arrived (no timing is checked).
    for (const step of report.runs[2]?.steps.filter((s) => s.scenario.startsWith('P2P relay')) ?? [])
      expect(step.delivered).toBeGreaterThan(0);
    expect(output).toMatch(/^\[\d\d:\d\d\] PeerJS#1 .*P2P relay/m);
  });

  test('scenario 5: one process against two sharing a private redis-server, or a loud skip', () => {
    const redis = report.redis;
    if (!hasRedis) {
      expect(redis).toMatchObject({ skipped: expect.stringContaining('redis-server') as unknown });
      return;
    }
    if (!redis || !('runs' in redis)) throw new Error(`scenario 5 did not run: ${JSON.stringify(redis)}`);
    expect(redis.runs.map((r) => r.kind)).toEqual(['ours', 'cluster']);
    expect(redis.processes).toBe(2);
    for (const row of redis.rows) wellFormed(row);
    const metrics = redis.rows.map((r) => r.metric);
    expect(metrics).toContain('sustained messages/s (p99 ≤ 50 ms)');
    expect(metrics.some((m) => m.startsWith('CPU-bound ceiling'))).toBe(true);
    // Messages crossed processes (no timing is checked: only that they arrived), and redis-server had work.
    const cluster = redis.runs[1]?.steps ?? [];
    expect(cluster.length).toBeGreaterThan(0);
    for (const step of cluster) expect(step.delivered).toBeGreaterThan(0);
    expect(cluster.some((s) => s.redisCpuMsPer1000 !== undefined)).toBe(true);
    expect(output).toMatch(/^\[\d\d:\d\d\] 2 processes \+ Redis#1 .*2 server processes/m);
  });

  test('writes RESULTS.md with the summary table, the machine and the chart', () => {
    const markdown = readFileSync(path.join(outDir, 'RESULTS.md'), 'utf8');
    // Prettier pads the table's cells.
    expect(markdown).toMatch(/^\| scenario +\| metric +\| JSONgle-Server +\| baseline +\| ratio +\|/m);
    expect(markdown).toMatch(/\*\*Machine:\*\* \d+ × .+ GB memory, Node v\d+/);
    expect(markdown).toContain('## 5. P2P relay across two processes through Redis');
    expect(markdown).toMatch(/^\| scenario +\| metric +\| JSONgle-Server +\| PeerJS +\| ratio +\|/m);
    if (hasRedis) expect(markdown).toMatch(/^\| scenario +\| metric +\| two processes \+ Redis +\| one process +\| ratio +\|/m);
    expect(markdown).toContain('](latency-vs-load.svg)');
    const svg = readFileSync(path.join(outDir, 'latency-vs-load.svg'), 'utf8');
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('<path d="M');
    expect(existsSync(path.join(outDir, 'PROFILE.md'))).toBe(false);
  });
});
