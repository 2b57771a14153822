import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Envelope } from '../src/protocol/envelope';
import { connectAs, type TestClient } from './helpers/client';
import { startServer, withServer, type TestServer } from './helpers/server';
import { eventually } from './fixtures/droppable-client';

/**
 * PROTOCOL.md §4 and issue #5: a client that vanishes without closing is taken out of its rooms,
 * and the others told `left`, within pingIntervalMs + pingTimeoutMs, however it vanished:
 * - killed (SIGKILL): its kernel resets the connection, so the server learns it at once;
 * - frozen (SIGSTOP): the TCP connection stays open and only the missing pongs tell. This is the
 *   case that leaves ghost members behind in servers that rely on the socket closing.
 * The vanishing client is a real socket.io-client in a child process (fixtures/vanishing-client.mjs).
 */

const PING_INTERVAL_MS = 300;
const PING_TIMEOUT_MS = 300;
/** For scheduling on 2 shared cores; still far below the defaults' 45 s. */
const MARGIN_MS = 1000;
const LEFT_WITHIN_MS = PING_INTERVAL_MS + PING_TIMEOUT_MS + MARGIN_MS;
const FIXTURE = path.join(__dirname, 'fixtures', 'vanishing-client.mjs');

interface VanishingClient {
  child: ChildProcess;
  /** Its session identity, as the server gave it. */
  sid: string;
}

const isMemberEvent = (event: 'joined' | 'left', sid: string) => (m: Envelope) =>
  m.jsongle.action === 'session-event' &&
  m.jsongle.event === event &&
  (m.jsongle.description?.member as { sid?: unknown } | undefined)?.sid === sid;

/** The reason the server logged for closing session `sid` (its log file set to debug), once it is written. */
async function loggedDisconnectReason(server: TestServer, sid: string): Promise<unknown> {
  return eventually(async () => {
    for (const name of readdirSync(server.logDir).filter((file) => file.endsWith('.log'))) {
      for (const line of readFileSync(path.join(server.logDir, name), 'utf8').split('\n')) {
        if (!line.includes(sid)) continue;
        const parsed = JSON.parse(line) as { message?: unknown; session?: unknown; reason?: unknown };
        if (parsed.message === 'disconnected' && parsed.session === sid) return parsed.reason;
      }
    }
    throw new Error(`no "disconnected" line for session ${sid} in the log`);
  }, 5000);
}

describe('a client that vanishes without closing', () => {
  let server: TestServer;
  const clients: TestClient[] = [];
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    server = await startServer({ pingIntervalMs: String(PING_INTERVAL_MS), pingTimeoutMs: String(PING_TIMEOUT_MS), logFileLevel: 'debug' });
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    for (const child of children.splice(0)) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      // A stopped process cannot die of SIGKILL until it is continued on every platform.
      child.kill('SIGCONT');
      child.kill('SIGKILL');
      await exited;
    }
  });
  afterAll(async () => {
    await server.close();
  });

  async function open(uid: string): Promise<TestClient> {
    const client = await connectAs(server.wsUrl, uid);
    clients.push(client);
    return client;
  }

  /** Starts the fixture client, which joins `rids`; resolves once it says it is in them all. */
  function spawnVanishingClient(uid: string, rids: string[]): Promise<VanishingClient> {
    const child = spawn(process.execPath, [FIXTURE, server.wsUrl, uid, ...rids], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let output = '';
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the client process did not join in 15 s:\n${output}`)), 15_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        const match = /^joined (\S+)$/m.exec(output);
        if (!match?.[1]) return;
        clearTimeout(timer);
        child.stdout.off('data', onData);
        resolve({ child, sid: match[1] });
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the client process exited (${String(code ?? signal)}) before it joined:\n${output}`));
      });
    });
  }

  /** Sends `signal` to the client and resolves with how long, in ms, until `member` got its `left`. */
  async function timeToLeft(vanishing: VanishingClient, member: TestClient, signal: NodeJS.Signals): Promise<number> {
    const sent = performance.now();
    vanishing.child.kill(signal);
    const left = await member.next(isMemberEvent('left', vanishing.sid), LEFT_WITHIN_MS + 4000, `left of ${vanishing.sid}`);
    const elapsed = performance.now() - sent;
    expect(left.to).toBe(member.sid);
    return elapsed;
  }

  /** What must hold once the vanished client is gone from the P2P room `rid` that `stayer` is in. */
  async function expectSeatFreed(rid: string, stayer: TestClient, vanished: string): Promise<void> {
    const room = await server.server.registry.room(rid);
    expect(room?.members.map((m) => m.sid)).toEqual([stayer.sid]);

    const carol = await open('carol');
    const joined = await carol.join(rid);
    expect(joined.jsongle).toMatchObject({ action: 'iq-result', query: 'session-join', description: { rid } });
    expect((joined.jsongle.description?.members as { sid: string }[]).map((m) => m.sid)).toEqual([stayer.sid]);
    await stayer.next(isMemberEvent('joined', carol.sid));
    const after = await server.server.registry.room(rid);
    expect(after?.members.map((m) => m.sid)).toEqual([stayer.sid, carol.sid]);
    expect(after?.members.some((m) => m.sid === vanished)).toBe(false);
  }

  test('killed (SIGKILL): the other member gets left at once and its seat is free again', async () => {
    const rid = 'killed-room';
    const alice = await open('alice');
    await alice.join(rid);
    const ghost = await spawnVanishingClient('ghost', [rid]);
    await alice.next(isMemberEvent('joined', ghost.sid));

    const elapsed = await timeToLeft(ghost, alice, 'SIGKILL');
    console.log(
      `unclean disconnect: killed client (SIGKILL): left after ${elapsed.toFixed(0)} ms (bound ${LEFT_WITHIN_MS} ms = ping ${PING_INTERVAL_MS} + ${PING_TIMEOUT_MS} + margin ${MARGIN_MS})`,
    );
    expect(elapsed).toBeLessThanOrEqual(LEFT_WITHIN_MS);
    await expect(loggedDisconnectReason(server, ghost.sid)).resolves.toBe('transport close');

    await expectSeatFreed(rid, alice, ghost.sid);
    await expect(server.server.registry.counts()).resolves.toEqual({ connections: 2, rooms: 1 });
  });

  test('frozen (SIGSTOP, TCP still open): every member of each of its rooms gets left within ping interval + timeout', async () => {
    const rid = 'frozen-room';
    const muc = '#muc#frozen';
    const alice = await open('alice');
    const bob = await open('bob');
    await alice.join(rid);
    await alice.mucJoin(muc);
    await bob.mucJoin(muc);
    await alice.next(isMemberEvent('joined', bob.sid));
    const ghost = await spawnVanishingClient('ghost', [rid, muc]);
    await alice.next(isMemberEvent('joined', ghost.sid));
    await alice.next(isMemberEvent('joined', ghost.sid));
    await bob.next(isMemberEvent('joined', ghost.sid));

    const sent = performance.now();
    const elapsed = await timeToLeft(ghost, alice, 'SIGSTOP');
    // The same departure, in the MUC room, for the member who shares only that room.
    await bob.next(isMemberEvent('left', ghost.sid), LEFT_WITHIN_MS + 4000, 'left in the MUC room');
    const mucElapsed = performance.now() - sent;
    await alice.next(isMemberEvent('left', ghost.sid));
    console.log(
      `unclean disconnect: frozen client (SIGSTOP): left after ${elapsed.toFixed(0)} ms in the P2P room, ${mucElapsed.toFixed(0)} ms in the MUC room (bound ${LEFT_WITHIN_MS} ms = ping ${PING_INTERVAL_MS} + ${PING_TIMEOUT_MS} + margin ${MARGIN_MS})`,
    );
    expect(elapsed).toBeLessThanOrEqual(LEFT_WITHIN_MS);
    expect(mucElapsed).toBeLessThanOrEqual(LEFT_WITHIN_MS);
    // Still stopped, so nothing of it closed the connection: the missing pongs did.
    expect(ghost.child.exitCode).toBeNull();
    await expect(loggedDisconnectReason(server, ghost.sid)).resolves.toBe('ping timeout');

    await expectSeatFreed(rid, alice, ghost.sid);
    const mucRoom = await server.server.registry.room(muc);
    expect(mucRoom?.members.map((m) => m.sid)).toEqual([alice.sid, bob.sid]);
    await expect(server.server.registry.counts()).resolves.toEqual({ connections: 3, rooms: 2 });
    await alice.expectNothing((m) => m.jsongle.event === 'left');
  });
});

/**
 * The other side of a departure: what a client sent before closing is handled before it leaves.
 * Socket.IO delivers, in order, every packet emitted before a clean close(); a JSONgle client ends
 * a call with session-terminate and session-metrics and may close its connection right after.
 * Over plain HTTP (useHTTPS=false, behind a TLS-terminating proxy) those packets and the
 * disconnect reach the server in one read, which is where they have been seen lost.
 */
describe.each([
  ['HTTPS', 'true'],
  ['plain HTTP (useHTTPS=false)', 'false'],
])('messages sent right before a clean close, over %s', (_transport, useHTTPS) => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ useHTTPS }),
    (started) => (server = started),
    clients,
  );

  async function pairInRoom(rid: string): Promise<[TestClient, TestClient]> {
    const alice = await connectAs(server.wsUrl, 'alice');
    const bob = await connectAs(server.wsUrl, 'bob');
    clients.push(alice, bob);
    await alice.join(rid);
    await bob.join(rid);
    await alice.next(isMemberEvent('joined', bob.sid));
    return [alice, bob];
  }

  test('a session-terminate sent just before close() reaches the other member, before its left', async () => {
    const [alice, bob] = await pairInRoom('hangup-room');
    const mid = bob.send('hangup-room', { action: 'session-terminate', namespace: 'call', sid: 'call-1', reason: 'success' });
    bob.close();

    const first = await alice.next((m) => m.id === mid || isMemberEvent('left', bob.sid)(m), 5000, 'session-terminate or left');
    expect(first.jsongle.action).toBe('session-terminate');
    expect(first).toMatchObject({ id: mid, from: 'hangup-room', to: alice.sid });
    await alice.next(isMemberEvent('left', bob.sid));
  });

  test('a session-metrics sent just before close() is counted', async () => {
    const [, bob] = await pairInRoom('metrics-room');
    const count = async () => {
      const text = (await server.rest().get('/metrics').expect(200)).text;
      return Number(/^jsongle_call_duration_seconds_count (\d+)$/m.exec(text)?.[1] ?? NaN);
    };
    const before = await count();
    bob.send(server.config.id, { action: 'session-metrics', namespace: 'call', sid: 'call-2', description: { duration: 42 } });
    bob.close();

    await eventually(async () => {
      await expect(server.server.registry.counts()).resolves.toEqual({ connections: 1, rooms: 1 });
    }, 5000);
    // The disconnect is handled after every message queued before it: once it is done, so is the report.
    await expect(count()).resolves.toBe(before + 1);
  });
});
