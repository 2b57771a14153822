import { performance } from 'node:perf_hooks';
import { io } from 'socket.io-client';
import { LatencyHistogram, type HistogramJson } from './histogram';
import { serve } from './ipc';
import { candidateFrame, openPeer, type PeerjsMessage } from './peerjs-client';

/**
 * One load-generator process (bench/run.ts starts several, pinned to the generator's core). It
 * opens connections that do the JSONgle hello and join exactly as a client does, then sends
 * relayed messages on an open-loop schedule: message k is due at start + k / rate whatever
 * happened before, it carries its due time (process.hrtime.bigint(), one monotonic clock for the
 * whole machine), and the receiver measures one-way latency from that due time, so that a late
 * sender counts against the latency (no coordinated omission). Against the PeerJS server it
 * speaks PeerJS's protocol instead (bench/peerjs-client.ts): a handshake is connect + OPEN, and
 * the two peers of a pair relay CANDIDATE messages to each other with the same stamps.
 */

/** What the server under test speaks: JSONgle over Socket.IO (ours and the Socket.IO baseline), or PeerJS. */
export type ClientProtocol = 'jsongle' | 'peerjs';

interface Incoming {
  from: string;
  to: string;
  jsongle: {
    action: string;
    query?: string;
    transaction?: string;
    status?: string;
    /**
     * A relayed bench message has `ts` and `run`; anything else (the hello's ack with its resume
     * token, receipts, TURN credentials…) is protocol traffic, matched by transaction or ignored.
     */
    description?: { ts?: unknown; run?: unknown } | null;
  };
}

interface Connection {
  index: number;
  /** The room (PeerJS: the pair) the generator groups it in. */
  rid?: string;
  /** What the server knows it by: the uid, or the PeerJS peer id. */
  id: string;
  /** Sends bench message `n` of `run` to the other members of its room. */
  relay(action: string, members: Connection[], run: string, n: number, due: number): void;
  close(): void;
  /** Set during the JSONgle handshake: what the connection waits for next. */
  await?: (message: Incoming) => void;
}

export interface OpenArgs {
  protocol: ClientProtocol;
  /** The servers: member m of each room connects to urls[m % urls.length] (scenario 5: the two members of a P2P room on two processes). */
  urls: string[];
  count: number;
  /** Global index of this process's first connection: connection i is uid `u<i>`, in room floor(i / roomSize). */
  offset: number;
  room?: { kind: 'p2p' | 'muc'; size: number; prefix: string };
  /** Handshakes in flight at once (closed loop, for saturation and capacity)... */
  concurrency?: number;
  /** ...or handshakes started per second (open loop, for handshake latency). */
  rate?: number;
  timeoutMs: number;
}

export interface OpenResult {
  opened: number;
  failed: number;
  errors: string[];
  /** Handshake time (connect + hello + join), from its scheduled start when open-loop. */
  handshake: HistogramJson;
  elapsedMs: number;
  elu: number;
  cpuMs: number;
}

export interface LoadArgs {
  run: string;
  /** Messages per second this process sends, across all its rooms. */
  rate: number;
  durationMs: number;
  drainMs: number;
  actions: string[];
}

export interface LoadResult {
  sent: number;
  expected: number;
  received: number;
  latency: HistogramJson;
  /** From the first due time to the last delivery, ms. */
  spanMs: number;
  elapsedMs: number;
  elu: number;
  cpuMs: number;
}

// Stamps are ns from one origin, set by the parent (see `setup`): small enough for a double.
let origin = process.hrtime.bigint();
const now = (): number => Number(process.hrtime.bigint() - origin);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// A real trickled ICE candidate and a short chat line: the sizes clients send most often.
const CANDIDATE =
  'candidate:842163049 1 udp 1677729535 192.0.2.33 54321 typ srflx raddr 10.0.0.17 rport 54321 generation 0 ufrag Xk3q network-cost 999';
const TEXT = 'On my way, starting the call in a minute.';

const connections: Connection[] = [];
const rooms = new Map<string, Connection[]>();
let current = { run: '', received: 0, lastAt: 0, latency: new LatencyHistogram() };

/** Records a relayed bench message (one with `ts` and `run`); false for anything else. */
function recordStamped(stamp: { ts?: unknown; run?: unknown } | null | undefined): boolean {
  if (typeof stamp?.run !== 'string' || typeof stamp.ts !== 'number') return false;
  if (stamp.run !== current.run) return true;
  const at = now();
  current.latency.record(at - stamp.ts);
  current.received++;
  current.lastAt = at;
  return true;
}

function onMessage(connection: Connection, message: Incoming | undefined): void {
  if (typeof message?.jsongle !== 'object') return;
  if (recordStamped(message.jsongle.description)) return;
  connection.await?.(message);
}

function onPeerjsMessage(message: PeerjsMessage): void {
  if (message.type === 'CANDIDATE') recordStamped(message.payload);
}

function handshake(args: OpenArgs, index: number): Promise<Connection> {
  const member = args.room ? index % args.room.size : 0;
  const url = args.urls[member % args.urls.length];
  if (url === undefined) return Promise.reject(new Error('no server URL'));
  return args.protocol === 'peerjs' ? peerjsHandshake(args, url, index) : jsongleHandshake(args, url, index);
}

/** connect + OPEN: PeerJS has no rooms, the pair is the generator's (peers floor(i / 2) * 2 and the next). */
async function peerjsHandshake(args: OpenArgs, url: string, index: number): Promise<Connection> {
  const prefix = args.room?.prefix ?? 'p-';
  const peer = await openPeer(url, `${prefix}u${index}`, args.timeoutMs, onPeerjsMessage);
  const rid = args.room ? `${prefix}${Math.floor(index / args.room.size)}` : undefined;
  const connectionId = `mc_${rid ?? index}`;
  return {
    index,
    rid,
    id: `${prefix}u${index}`,
    relay: (_action, members, run, n, due) => {
      // PeerJS relays 1:1 only: to the other peer of the pair.
      const to = members[0]?.index === index ? members[1] : members[0];
      if (to) peer.ws.send(candidateFrame(to.id, connectionId, CANDIDATE, run, due));
    },
    close: () => peer.close(),
  };
}

/** connect, then answer the session-hello, then (if asked) join the connection's room. */
function jsongleHandshake(args: OpenArgs, url: string, index: number): Promise<Connection> {
  const socket = io(url, {
    transports: ['websocket'],
    auth: { appToken: '' },
    reconnection: false,
    forceNew: true,
    timeout: args.timeoutMs,
  });
  const connection: Connection = {
    index,
    id: `u${index}`,
    relay: (action, members, run, n, due) => {
      socket.emit('jsongle', message(action, connection.rid ?? '', members.length, run, n, due));
    },
    close: () => socket.close(),
  };
  socket.on('jsongle', (message: Incoming | undefined) => onMessage(connection, message));
  return new Promise<Connection>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      connection.await = undefined;
      socket.close();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail('handshake timed out'), args.timeoutMs);
    socket.once('connect_error', (error) => fail(`connect_error ${error.message}`));
    const done = () => {
      clearTimeout(timer);
      connection.await = undefined;
      resolve(connection);
    };
    const join = () => {
      const room = args.room;
      if (!room) return done();
      const rid = `${room.prefix}${Math.floor(index / room.size)}`;
      const transaction = `j${index}`;
      connection.rid = rid;
      connection.await = (message) => {
        if (message.jsongle.transaction !== transaction) return;
        if (message.jsongle.action === 'iq-result') done();
        else fail(`join refused: ${JSON.stringify(message.jsongle)}`);
      };
      const kind = room.kind === 'p2p' ? { query: 'session-join', namespace: 'room' } : { query: 'muc-join', namespace: 'muc' };
      socket.emit('jsongle', {
        id: `join-${index}`,
        from: null,
        to: 'jsongle-server',
        jsongle: { action: 'iq-set', ...kind, transaction, description: { rid } },
      });
    };
    connection.await = (message) => {
      const { action, query, transaction } = message.jsongle;
      if (action !== 'iq-get' || query !== 'session-hello') return;
      connection.await = (answer) => {
        if (answer.jsongle.action !== 'ack' || answer.jsongle.transaction !== transaction) return;
        if (answer.jsongle.status === 'success') join();
        else fail(`hello refused: ${JSON.stringify(answer.jsongle)}`);
      };
      socket.emit('jsongle', {
        id: `hello-${index}`,
        from: null,
        to: message.from,
        jsongle: { action: 'iq-result', query: 'session-hello', transaction, description: { uid: `u${index}` } },
      });
    };
  });
}

function measure(): () => { elapsedMs: number; elu: number; cpuMs: number } {
  const start = performance.now();
  const elu = performance.eventLoopUtilization();
  const cpu = process.cpuUsage();
  return () => {
    const used = process.cpuUsage(cpu);
    return {
      elapsedMs: performance.now() - start,
      elu: performance.eventLoopUtilization(elu).utilization,
      cpuMs: (used.user + used.system) / 1000,
    };
  };
}

async function open(args: OpenArgs): Promise<OpenResult> {
  const stop = measure();
  const histogram = new LatencyHistogram();
  const errors: string[] = [];
  let opened = 0;
  let failed = 0;
  const one = async (i: number, due: number) => {
    try {
      const connection = await handshake(args, args.offset + i);
      histogram.record(now() - due);
      connections.push(connection);
      if (connection.rid !== undefined) {
        const members = rooms.get(connection.rid) ?? [];
        members.push(connection);
        rooms.set(connection.rid, members);
      }
      opened++;
    } catch (error) {
      failed++;
      if (errors.length < 5) errors.push(error instanceof Error ? error.message : String(error));
    }
  };

  const { rate } = args;
  if (rate !== undefined) {
    // Open loop: handshake i starts at start + i / rate, and its time counts from then.
    const start = now() + 2e6;
    const started: Promise<void>[] = [];
    while (started.length < args.count) {
      const due = start + (started.length * 1e9) / rate;
      const wait = (due - now()) / 1e6;
      if (wait > 1) await sleep(Math.floor(wait));
      else started.push(one(started.length, due));
    }
    await Promise.all(started);
  } else {
    let next = 0;
    const worker = async () => {
      while (next < args.count) {
        const i = next++;
        await one(i, now());
      }
    };
    await Promise.all(Array.from({ length: Math.min(args.count, args.concurrency ?? 50) }, worker));
  }
  return { opened, failed, errors, handshake: histogram.toJSON(), ...stop() };
}

function message(action: string, rid: string, members: number, run: string, n: number, due: number) {
  const isText = action === 'session-text';
  return {
    id: `${run}-${n}`,
    from: null,
    to: rid,
    jsongle: isText
      ? { action, namespace: members > 2 ? 'muc' : 'message', description: { content: TEXT, ts: due, run } }
      : {
          action,
          namespace: 'call',
          sid: `call-${rid}`,
          description: { candidate: CANDIDATE, sdpMid: '0', sdpMLineIndex: 0, ts: due, run },
        },
  };
}

async function load(args: LoadArgs): Promise<LoadResult> {
  const roomList = [...rooms.entries()];
  if (roomList.length === 0 || args.rate <= 0) throw new Error('no rooms to load');
  const total = Math.max(1, Math.round((args.rate * args.durationMs) / 1000));
  const interval = 1e9 / args.rate;
  current = { run: args.run, received: 0, lastAt: 0, latency: new LatencyHistogram() };
  const stop = measure();
  const start = now() + 2e6;
  let sent = 0;
  let expected = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const at = now();
      while (sent < total) {
        const due = start + sent * interval;
        if (due > at) break;
        // Rooms in turn, and in each room its members in turn: one sender at a time per room.
        const [, members] = roomList[sent % roomList.length] as [string, Connection[]];
        const sender = members[Math.floor(sent / roomList.length) % members.length] as Connection;
        const action = args.actions[sent % args.actions.length] ?? 'session-text';
        sender.relay(action, members, args.run, sent, due);
        expected += members.length - 1;
        sent++;
      }
      if (sent >= total) {
        resolve();
        return;
      }
      const wait = (start + sent * interval - now()) / 1e6;
      setTimeout(tick, Math.max(0, Math.floor(wait)));
    };
    tick();
  });
  const deadline = performance.now() + args.drainMs;
  while (current.received < expected && performance.now() < deadline) await sleep(5);
  const spanMs = current.lastAt > start ? (current.lastAt - start) / 1e6 : 0;
  return { sent, expected, received: current.received, latency: current.latency.toJSON(), spanMs, ...stop() };
}

async function close(): Promise<number> {
  const count = connections.length;
  for (const connection of connections.splice(0)) connection.close();
  rooms.clear();
  return count;
}

serve(
  {
    /** Every process stamps from the parent's origin (process.hrtime is one clock for the machine). */
    setup: async ({ origin: parentOrigin }: { origin: string }) => {
      origin = BigInt(parentOrigin);
      return { pid: process.pid };
    },
    open,
    load,
    close,
    exit: async () => {
      await close();
      setTimeout(() => process.exit(0), 20);
      return true;
    },
  },
  { pid: process.pid },
);
