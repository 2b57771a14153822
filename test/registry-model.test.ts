import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type { Envelope } from '../src/protocol/envelope';
import { connectAs, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';

/**
 * Issue #5, PROTOCOL.md §4–§5: random sequences of valid operations by several real clients on one
 * server (P2P and MUC joins, leaves, relayed session-text, clean and abrupt disconnects,
 * reconnects), checked after every step against a model kept here: the registry's rooms and
 * counts, and every message every client received (answers, joined/left events, relayed texts).
 *
 * After each step every connected client makes a round trip (an unknown iq query): a connection
 * is answered in order, so what it received before that answer is everything the step sent it.
 */

const SERVER_ID = 'jsongle-server';
const SLOTS = 5;
const MUC_CAPACITY = 3;
const MUC_ROOMS_PER_USER = 2;
const P2P_CAPACITY = 2;
/** Two P2P-only names, two reserved MUC names, and one plain name either kind may claim first. */
const ROOMS = ['p0', 'p1', '#muc#m0', '#muc#m1', 'either'];
const RUNS = 50;
const STEP_TIMEOUT_MS = 3000;

type RoomKind = 'p2p' | 'muc';
type Op =
  | { kind: 'session-join' | 'muc-join' | 'session-leave' | 'text'; who: number; room: number }
  | { kind: 'disconnect'; who: number; abrupt: boolean };

const who = fc.integer({ min: 0, max: SLOTS - 1 });
const room = fc.integer({ min: 0, max: ROOMS.length - 1 });
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('session-join' as const), who, room }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('muc-join' as const), who, room }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('session-leave' as const), who, room }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('text' as const), who, room }) },
  // On a slot that is disconnected, this reconnects it (a new connection: a new session identity).
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('disconnect' as const), who, abrupt: fc.boolean() }) },
);

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

interface Member {
  sid: string;
  uid: string;
}

class Model {
  readonly rooms = new Map<string, { kind: RoomKind; members: Member[] }>();
  /** What each slot's connection must have received during the current step. */
  readonly expected: string[][] = Array.from({ length: SLOTS }, () => []);

  constructor(readonly members: (Member | undefined)[]) {}

  private tell(member: Member, line: string): void {
    const slot = this.members.findIndex((m) => m?.sid === member.sid);
    this.expected[slot]?.push(line);
  }

  /** §4: session-join and muc-join, refusals in the order the protocol lists them. */
  join(slot: number, rid: string, kind: RoomKind, query: string): void {
    const me = this.members[slot] as Member;
    const refuse = (code: number) => this.tell(me, `iq-error ${query} ${code}`);
    if (kind === 'p2p' && rid.startsWith('#muc#')) return refuse(400001);
    const existing = this.rooms.get(rid);
    if (existing && existing.kind !== kind) return refuse(409002);
    const others = existing?.members.filter((m) => m.sid !== me.sid) ?? [];
    const result = () => this.tell(me, `iq-result ${query} ${rid} members=${JSON.stringify(others)}`);
    // Joining again a room one is in succeeds and tells no one.
    if (existing && others.length < existing.members.length) return result();
    if (existing && existing.members.length >= (kind === 'p2p' ? P2P_CAPACITY : MUC_CAPACITY)) return refuse(403001);
    if (
      kind === 'muc' &&
      [...this.rooms.values()].filter((r) => r.kind === 'muc' && r.members.some((m) => m.sid === me.sid)).length >= MUC_ROOMS_PER_USER
    ) {
      return refuse(403003);
    }
    this.rooms.set(rid, { kind, members: [...others, me] });
    result();
    for (const other of others) this.tell(other, `${kind === 'p2p' ? 'room' : 'muc'} joined ${rid} ${JSON.stringify(me)}`);
  }

  leave(slot: number, rid: string): void {
    const me = this.members[slot] as Member;
    if (!this.remove(me, rid)) return this.tell(me, 'iq-error session-leave 404002');
    this.tell(me, `iq-result session-leave ${rid}`);
  }

  /** Takes `me` out of `rid` and tells those who remain; false if it was not in. */
  private remove(me: Member, rid: string): boolean {
    const existing = this.rooms.get(rid);
    if (!existing?.members.some((m) => m.sid === me.sid)) return false;
    const remaining = existing.members.filter((m) => m.sid !== me.sid);
    if (remaining.length === 0) this.rooms.delete(rid);
    else this.rooms.set(rid, { kind: existing.kind, members: remaining });
    for (const other of remaining) this.tell(other, `${existing.kind === 'p2p' ? 'room' : 'muc'} left ${rid} ${JSON.stringify(me)}`);
    return true;
  }

  /** §5: a session-text to a room. */
  text(slot: number, rid: string, id: string): void {
    const me = this.members[slot] as Member;
    const existing = this.rooms.get(rid);
    if (!existing?.members.some((m) => m.sid === me.sid)) return this.tell(me, 'session-error 404002');
    const others = existing.members.filter((m) => m.sid !== me.sid);
    if (others.length === 0 && existing.kind === 'p2p') return this.tell(me, 'session-error 404003');
    const from = existing.kind === 'p2p' ? rid : `${rid}/${me.uid}`;
    for (const other of others) this.tell(other, `text from=${from} id=${id}`);
    this.tell(me, `ack ${id}`);
  }

  /** §4: a connection that ends leaves every room, and their members are told. */
  disconnect(slot: number): void {
    const me = this.members[slot] as Member;
    for (const rid of [...this.rooms.keys()]) this.remove(me, rid);
    this.members[slot] = undefined;
  }
}

/** A member as the model writes it (whatever else the server adds to it). */
const memberOf = (value: unknown): Member => {
  const { sid, uid } = value as Member;
  return { sid, uid };
};

/** A received envelope in the model's notation. */
function render(message: Envelope): string {
  const j = message.jsongle;
  const description = j.description ?? {};
  switch (j.action) {
    case 'iq-result':
      return j.query === 'session-leave'
        ? `iq-result session-leave ${String(description.rid)}`
        : `iq-result ${String(j.query)} ${String(description.rid)} members=${JSON.stringify((description.members as unknown[]).map(memberOf))}`;
    case 'iq-error':
      return `iq-error ${String(j.query)} ${String(description.errorCode)}`;
    case 'session-error':
      return `session-error ${String(description.errorCode)}`;
    case 'session-event':
      if (j.event === 'ack') return `ack ${String(description.mid)}`;
      return `${String(j.namespace)} ${String(j.event)} ${String(description.rid)} ${JSON.stringify(memberOf(description.member))}`;
    case 'session-text':
      return `text from=${message.from} id=${message.id}`;
    default:
      return `unexpected ${JSON.stringify(message)}`;
  }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

describe('the registry follows a model through random operations of several clients', () => {
  let server: TestServer;
  const totals = { runs: 0, steps: 0, disconnects: 0, reconnects: 0 };

  beforeAll(async () => {
    server = await startServer({
      maxMembersPerMultiRoom: String(MUC_CAPACITY),
      maxMultiRoomPerUser: String(MUC_ROOMS_PER_USER),
      multiRoomPrefix: '#muc#',
      maxMessagesPerSecond: '100000',
      maxConnectionsPerAddress: '100000',
      // §4 as written: a closed connection's rooms are told at once (no session held for a resume).
      reconnectGraceMs: '0',
    });
  });

  afterAll(async () => {
    await server.close();
    console.log(
      `registry-model: ${totals.runs} runs, ${totals.steps} steps (${totals.disconnects} disconnects, ${totals.reconnects} reconnects)`,
    );
  });

  async function counts(): Promise<{ connections: number; rooms: number }> {
    const { connections, rooms } = await server.server.registry.counts();
    return { connections, rooms };
  }

  /** Polls the registry's counts (bounded) until they are `wanted`: a disconnect is cleaned up asynchronously. */
  async function settle(wanted: { connections: number; rooms: number }): Promise<void> {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const now = await counts();
      if (now.connections === wanted.connections && now.rooms === wanted.rooms) return;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Everything `client` received up to the answer of a round trip sent now. */
  async function drain(client: TestClient): Promise<string[]> {
    const transaction = randomUUID();
    client.send(SERVER_ID, { action: 'iq-set', query: 'barrier', transaction });
    await client.next((m) => m.jsongle.transaction === transaction, STEP_TIMEOUT_MS, 'the barrier');
    return client.inbox.splice(0).map(render);
  }

  async function run(ops: Op[]): Promise<void> {
    totals.runs++;
    const clients: (TestClient | undefined)[] = [];
    try {
      for (let slot = 0; slot < SLOTS; slot++) clients.push(await connectAs(server.wsUrl, `u${slot}`));
      const model = new Model(clients.map((client) => (client ? { sid: client.sid, uid: client.uid } : undefined)));

      for (const [index, step] of ops.entries()) {
        totals.steps++;
        const client = clients[step.who];
        if (step.kind === 'disconnect') {
          if (client) {
            totals.disconnects++;
            // Abrupt: the transport goes away without a Socket.IO DISCONNECT ('transport close').
            if (step.abrupt) client.socket.io.engine.close();
            else client.socket.disconnect();
            clients[step.who] = undefined;
            model.disconnect(step.who);
          } else {
            totals.reconnects++;
            const fresh = await connectAs(server.wsUrl, `u${step.who}`);
            clients[step.who] = fresh;
            model.members[step.who] = { sid: fresh.sid, uid: fresh.uid };
          }
        } else if (client) {
          const rid = ROOMS[step.room] as string;
          if (step.kind === 'text') {
            const id = client.send(rid, { action: 'session-text', namespace: 'message', description: { body: `step ${index}` } });
            model.text(step.who, rid, id);
          } else if (step.kind === 'session-leave') {
            client.send(SERVER_ID, {
              action: 'iq-set',
              query: step.kind,
              namespace: 'room',
              transaction: randomUUID(),
              description: { rid },
            });
            model.leave(step.who, rid);
          } else {
            const namespace = step.kind === 'muc-join' ? 'muc' : 'room';
            client.send(SERVER_ID, { action: 'iq-set', query: step.kind, namespace, transaction: randomUUID(), description: { rid } });
            model.join(step.who, rid, step.kind === 'muc-join' ? 'muc' : 'p2p', step.kind);
          }
        }

        const connected = model.members.filter((m) => m !== undefined).length;
        const where = `after step ${index} ${JSON.stringify(step)}`;
        // The actor's answer comes first on its own connection; a disconnect is waited for in the registry.
        const actor = clients[step.who];
        const actorLines = actor ? await drain(actor) : [];
        await settle({ connections: connected, rooms: model.rooms.size });

        // 1. The registry: every room in play, and the counts.
        for (const rid of ROOMS) {
          const actual = await server.server.registry.room(rid);
          const wanted = model.rooms.get(rid);
          expect({
            where,
            rid,
            room: actual && { kind: actual.kind, members: actual.members.map(({ sid, uid }) => ({ sid, uid })) },
          }).toEqual({
            where,
            rid,
            room: wanted,
          });
        }
        expect({ where, counts: await counts() }).toEqual({ where, counts: { connections: connected, rooms: model.rooms.size } });

        // 2. What every client received: exactly what the model says, in order.
        for (let slot = 0; slot < SLOTS; slot++) {
          const other = clients[slot];
          if (!other) continue;
          const received = slot === step.who ? [...actorLines, ...(await drain(other))] : await drain(other);
          const wanted = model.expected[slot] as string[];
          // A connection that ends leaves its rooms in an order §4 leaves open: compare those as sets.
          const inOrder = step.kind !== 'disconnect';
          expect({ where, slot, received: inOrder ? received : received.sort() }).toEqual({
            where,
            slot,
            received: inOrder ? wanted : [...wanted].sort(),
          });
          (model.expected[slot] as string[]).length = 0;
        }
      }
    } finally {
      for (const client of clients) client?.close();
      await settle({ connections: 0, rooms: 0 });
    }
    // Nothing is left behind once everyone has gone.
    expect(await counts()).toEqual({ connections: 0, rooms: 0 });
  }

  test('50 runs of random steps: the registry and every inbox match the model after each step', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40, size: 'max' }), run),
      // Bounded even while a failure is shrunk: the report then gives the shortest sequence found so far.
      { numRuns: RUNS, plugins: [fc.interruptAfterTimeLimit(60_000, { failOnInterrupt: true })] },
    );
    expect(totals.runs).toBeGreaterThanOrEqual(RUNS);
    expect(totals.steps).toBeGreaterThanOrEqual(RUNS * 10);
  }, 90_000);
});
