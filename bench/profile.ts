import { readFileSync } from 'node:fs';
import path from 'node:path';

/** Reads a V8 .cpuprofile (node --cpu-prof) and tells where the busy time went. */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  busyMs: number;
  /** Shares of busy samples: by function (self), by package or source file (self), and our own functions (inclusive). */
  self: { name: string; share: number }[];
  areas: { name: string; share: number }[];
  /** Like areas, but counting everything called from there (a log line's file write counts as logging). */
  areasInclusive: { name: string; share: number }[];
  ownInclusive: { name: string; share: number }[];
}

const IDLE = '(idle)';

/** Packages that only serve logging, shown as one concern: a log line's cost is spread over all of them. */
const LOGGING = new Set([
  'winston',
  'winston-transport',
  'winston-daily-rotate-file',
  'file-stream-rotator',
  'logform',
  'moment',
  'readable-stream',
  'safe-stable-stringify',
  'triple-beam',
  'colors',
  '@colors/colors',
  'fecha',
]);

function area(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules?.[1]) return LOGGING.has(modules[1]) ? 'logging (winston and its helpers)' : modules[1];
  const own = /(?:^|\/)((?:src|bench)\/.+)$/.exec(url.replace(/^.*\/out\/build\//, ''));
  if (own?.[1]) return own[1];
  if (url.startsWith('node:')) return 'node internals';
  return path.basename(url);
}

function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  if (url === '') return functionName || '(anonymous)';
  return `${functionName || '(anonymous)'} (${area(url, functionName)}:${lineNumber + 1})`;
}

export function summarizeProfile(file: string, top = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const totalHits = profile.nodes.reduce((n, node) => n + (node.hitCount ?? 0), 0);
  const idleHits = profile.nodes.filter((n) => n.callFrame.functionName === IDLE).reduce((n, node) => n + (node.hitCount ?? 0), 0);
  const busy = Math.max(1, totalHits - idleHits);

  const self = new Map<string, number>();
  const areas = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const areasInclusive = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, hits: number) => map.set(key, (map.get(key) ?? 0) + hits);
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0 || node.callFrame.functionName === IDLE) continue;
    add(self, label(node), hits);
    add(areas, area(node.callFrame.url, node.callFrame.functionName), hits);
    // Inclusive time of our own functions: every function of src/ on the stack, once per sample.
    const seen = new Set<string>();
    const areasSeen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id);
      if (frame && frame.callFrame.url !== '') areasSeen.add(area(frame.callFrame.url, frame.callFrame.functionName));
      if (frame && /\/src\//.test(frame.callFrame.url) && !frame.callFrame.url.includes('node_modules')) seen.add(label(frame));
    }
    for (const key of seen) add(inclusive, key, hits);
    // Every stack starts in node internals: only the layers above say something.
    areasSeen.delete('node internals');
    for (const key of areasSeen) add(areasInclusive, key, hits);
  }
  const ranked = (map: Map<string, number>, n: number) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, hits]) => ({ name, share: hits / busy }));
  const durationMs = (profile.endTime - profile.startTime) / 1000;
  return {
    file,
    busyMs: (durationMs * busy) / Math.max(1, totalHits),
    self: ranked(self, top),
    areas: ranked(areas, 12),
    areasInclusive: ranked(areasInclusive, 14),
    ownInclusive: ranked(inclusive, 15),
  };
}

const pct = (share: number) => `${(share * 100).toFixed(1)} %`;

export function profileMarkdown(title: string, summary: ProfileSummary): string {
  const rows = (items: { name: string; share: number }[]) =>
    items.map((i) => `| ${i.name.replace(/\|/g, '\\|')} | ${pct(i.share)} |`).join('\n');
  return `### ${title}

${path.basename(summary.file)}: ${(summary.busyMs / 1000).toFixed(1)} s of busy CPU (shares below are of busy samples, idle excluded).

| where (self time, by package or source file) | share |
|---|---|
${rows(summary.areas)}

| where (inclusive: it or what it calls is running) | share |
|---|---|
${rows(summary.areasInclusive)}

| function (self time) | share |
|---|---|
${rows(summary.self)}

| our functions (inclusive: on the stack) | share |
|---|---|
${rows(summary.ownInclusive)}
`;
}
