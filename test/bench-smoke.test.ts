import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Report } from '../bench/results';

const PROJECT_ROOT = path.join(__dirname, '..');

/**
 * The benchmark's smallest pieces (issue #8): `bench/run.ts --smoke` drives both servers through
 * every scenario and writes a well-formed report. Its numbers are not checked: no timed assertions.
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

  test('runs both servers through every scenario, with progress lines', () => {
    expect(report.runs.map((r) => r.kind)).toEqual(['ours', 'baseline']);
    const scenarios = new Set(report.rows.map((r) => r.scenario));
    for (const scenario of ['capacity', 'handshakes', 'P2P relay', 'MUC fan-out, rooms of 10']) expect(scenarios).toContain(scenario);
    expect(output).toMatch(/^\[\d\d:\d\d\] .*P2P relay/m);
  });

  test('every row has a number for both servers, and a ratio unless flagged', () => {
    for (const row of report.rows) {
      expect(typeof row.ours).toBe('number');
      expect(typeof row.baseline).toBe('number');
      if (row.ratio !== undefined) expect(row.ratio).toBeCloseTo((row.ours ?? NaN) / (row.baseline ?? NaN), 6);
      else expect(row.flags.length > 0 || row.baseline === 0 || !Number.isFinite(row.ours)).toBe(true);
    }
    const held = report.rows.find((r) => r.scenario === 'capacity' && r.metric.startsWith("hello'd connections held"));
    expect(held).toMatchObject({ ours: 100, baseline: 100 });
  });

  test('writes RESULTS.md with the summary table, the machine and the chart', () => {
    const markdown = readFileSync(path.join(outDir, 'RESULTS.md'), 'utf8');
    // Prettier pads the table's cells.
    expect(markdown).toMatch(/^\| scenario +\| metric +\| JSONgle-Server +\| baseline +\| ratio +\|/m);
    expect(markdown).toMatch(/\*\*Machine:\*\* \d+ × .+ GB memory, Node v\d+/);
    expect(markdown).toContain('Redis');
    expect(markdown).toContain('](latency-vs-load.svg)');
    const svg = readFileSync(path.join(outDir, 'latency-vs-load.svg'), 'utf8');
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('<path d="M');
    expect(existsSync(path.join(outDir, 'PROFILE.md'))).toBe(false);
  });
});
