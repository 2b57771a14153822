import type { ServerKind } from './server-child';

export interface RelayPlan {
  rooms: number;
  /** Measure the fixed load a second time when other processes were busy during the first (not in the seconds-long smoke run). */
  remeasureNoisy: boolean;
  warmupMs: number;
  fixedRate: number;
  fixedMs: number;
  rampRates: number[];
  stepMs: number;
  drainMs: number;
}

/** How big each scenario is in each mode; every load is bounded in count and in time. */
export interface Plan {
  mode: 'smoke' | 'quick' | 'full';
  /** Interleaved so that a drift of the machine hits the servers alike (issue #8: ABBA; with PeerJS, ABCCBA). */
  order: ServerKind[];
  /** Pause between two runs, for the sockets of the last one to close. */
  settleMs: number;
  capacity: { steps: number[]; concurrency: number; holdMs: number };
  handshakes: { count: number; concurrency: number; rate: number; rateCount: number };
  relay: RelayPlan;
  muc: { sizes: number[]; connections: number; warmupMs: number; rampDeliveries: number[]; stepMs: number; drainMs: number };
  /**
   * Scenario 5: the P2P relay on one JSONgle-Server process ('ours') and on two sharing a
   * redis-server ('cluster'), interleaved in `order` like the main runs.
   */
  redis: RelayPlan & { order: ('ours' | 'cluster')[] };
  /**
   * The PeerJS runs (PEERJS_SCENARIOS only): the handshake plan above, and the P2P relay at the
   * same fixed load and the same ramp steps at the bottom, with fewer steps above in the full run
   * to keep it within 15 minutes.
   */
  peerjs: { relay: RelayPlan };
}

const ABCCBA: ServerKind[] = ['ours', 'baseline', 'peerjs', 'peerjs', 'baseline', 'ours'];

/** The scenarios that fit the PeerJS server: it has no rooms of more than two, no capacity gate, no Redis mode. */
export const PEERJS_SCENARIOS: readonly ScenarioName[] = ['handshakes', 'relay'];

const QUICK_RELAY: RelayPlan = {
  rooms: 100,
  remeasureNoisy: true,
  warmupMs: 500,
  fixedRate: 1000,
  fixedMs: 1500,
  rampRates: [2000, 5000, 10000],
  stepMs: 1200,
  drainMs: 1500,
};

export const PLANS: Record<Plan['mode'], Plan> = {
  full: {
    mode: 'full',
    order: ABCCBA,
    settleMs: 500,
    capacity: { steps: [1000, 2000, 5000, 10000, 15000], concurrency: 100, holdMs: 1500 },
    handshakes: { count: 3000, concurrency: 50, rate: 100, rateCount: 500 },
    relay: {
      rooms: 500,
      remeasureNoisy: true,
      warmupMs: 2000,
      fixedRate: 2000,
      fixedMs: 8000,
      rampRates: [2000, 4000, 6000, 8000, 10000, 12000, 15000, 18000, 22000, 26000],
      stepMs: 4000,
      drainMs: 3000,
    },
    muc: {
      sizes: [10, 50],
      connections: 500,
      warmupMs: 1500,
      rampDeliveries: [5000, 10000, 20000, 30000, 40000, 60000, 80000],
      stepMs: 3000,
      drainMs: 3000,
    },
    redis: {
      order: ['ours', 'cluster', 'cluster', 'ours'],
      rooms: 500,
      remeasureNoisy: true,
      warmupMs: 2000,
      fixedRate: 1000,
      fixedMs: 6000,
      rampRates: [1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 13000, 16000, 20000, 24000],
      stepMs: 3000,
      drainMs: 3000,
    },
    peerjs: {
      relay: {
        rooms: 500,
        remeasureNoisy: true,
        warmupMs: 2000,
        fixedRate: 2000,
        fixedMs: 8000,
        rampRates: [2000, 4000, 6000, 8000, 12000, 18000, 26000],
        stepMs: 4000,
        drainMs: 3000,
      },
    },
  },
  quick: {
    mode: 'quick',
    order: ABCCBA,
    settleMs: 500,
    capacity: { steps: [500, 1000, 2000], concurrency: 100, holdMs: 300 },
    handshakes: { count: 400, concurrency: 50, rate: 100, rateCount: 100 },
    relay: QUICK_RELAY,
    muc: { sizes: [10, 50], connections: 100, warmupMs: 300, rampDeliveries: [5000, 20000], stepMs: 1200, drainMs: 1500 },
    redis: {
      order: ['ours', 'cluster', 'cluster', 'ours'],
      rooms: 100,
      remeasureNoisy: true,
      warmupMs: 500,
      fixedRate: 1000,
      fixedMs: 1500,
      rampRates: [2000, 4000, 8000],
      stepMs: 1200,
      drainMs: 1500,
    },
    // The same steps as JSONgle-Server's relay: quick mode is short enough as it is.
    peerjs: { relay: QUICK_RELAY },
  },
  smoke: {
    mode: 'smoke',
    order: ['ours', 'baseline', 'peerjs'],
    settleMs: 100,
    capacity: { steps: [50, 100], concurrency: 25, holdMs: 100 },
    handshakes: { count: 40, concurrency: 10, rate: 50, rateCount: 20 },
    relay: { rooms: 10, remeasureNoisy: false, warmupMs: 200, fixedRate: 200, fixedMs: 500, rampRates: [500], stepMs: 500, drainMs: 1000 },
    muc: { sizes: [10], connections: 20, warmupMs: 200, rampDeliveries: [1000], stepMs: 500, drainMs: 1000 },
    redis: {
      order: ['ours', 'cluster'],
      rooms: 10,
      remeasureNoisy: false,
      warmupMs: 200,
      fixedRate: 200,
      fixedMs: 500,
      rampRates: [500],
      stepMs: 500,
      drainMs: 1000,
    },
    peerjs: {
      relay: {
        rooms: 10,
        remeasureNoisy: false,
        warmupMs: 200,
        fixedRate: 200,
        fixedMs: 500,
        rampRates: [500],
        stepMs: 500,
        drainMs: 1000,
      },
    },
  },
};

export const SCENARIOS = ['capacity', 'handshakes', 'relay', 'muc', 'redis'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface Options {
  plan: Plan;
  only: ScenarioName[];
  /** The servers of plan.order to run: all, or without PeerJS (`--no-peerjs`), or JSONgle-Server and PeerJS alone (`--only peerjs`). */
  setups: ServerKind[];
  /** Where RESULTS.md, the chart and results.json go. */
  outDir: string;
  generators: number;
  /** Profiles both servers (one process per scenario) instead of comparing. */
  profile: boolean;
  /** Writes the report again from the last results.json, measuring nothing. */
  reportOnly: boolean;
}

export function parseArgs(argv: string[], benchDir: string): Options {
  const value = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const mode = argv.includes('--smoke') ? 'smoke' : argv.includes('--quick') ? 'quick' : 'full';
  const listed = value('--only')?.split(',') ?? [...SCENARIOS];
  // `--only peerjs` (alone or with handshakes and/or relay): JSONgle-Server against PeerJS, no Socket.IO baseline.
  const peerjsOnly = listed.includes('peerjs');
  const named = listed.filter((s): s is ScenarioName => (SCENARIOS as readonly string[]).includes(s));
  const only = peerjsOnly && named.length === 0 ? [...PEERJS_SCENARIOS] : named;
  if (only.length === 0) throw new Error(`--only takes a comma-separated list of ${[...SCENARIOS, 'peerjs'].join(', ')}`);
  const setups: ServerKind[] = peerjsOnly
    ? ['ours', 'peerjs']
    : argv.includes('--no-peerjs')
      ? ['ours', 'baseline']
      : ['ours', 'baseline', 'peerjs'];
  const generators = Number(value('--generators') ?? 2);
  if (!Number.isInteger(generators) || generators < 1 || generators > 8) throw new Error('--generators takes 1 to 8');
  return {
    plan: PLANS[mode],
    only,
    setups,
    outDir: value('--out') ?? benchDir,
    generators,
    profile: argv.includes('--profile'),
    reportOnly: argv.includes('--report'),
  };
}
