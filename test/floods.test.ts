import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { io } from 'socket.io-client';
import type { Envelope } from '../src/protocol/envelope';
import { connect, connectAs, refusal, type TestClient } from './helpers/client';
import { startServer, withServer, type TestServer } from './helpers/server';
import { DroppableWebSocket, connectDroppable, drop, eventually } from './fixtures/droppable-client';

/**
 * Issue #5, floods: one abusive connection (or address) gets refusals, and nobody else notices.
 * What a single connection gets is in input-limits.test.ts (429001, 413001) and
 * connection-gate.test.ts (the 4th connection from one address): this file is about the others
 * in the same room and on the same server while it happens, and about bursts of connections.
 */

type ConnectError = Error & { data?: unknown };

const isSessionError = (code: number) => (m: Envelope) => m.jsongle.action === 'session-error' && m.jsongle.description?.errorCode === code;
const isReceipt = (m: Envelope) => m.jsongle.action === 'session-event' && m.jsongle.event === 'ack';
const isMemberEvent = (event: 'joined' | 'left', sid: string) => (m: Envelope) =>
  m.jsongle.action === 'session-event' &&
  m.jsongle.event === event &&
  (m.jsongle.description?.member as { sid?: unknown } | undefined)?.sid === sid;

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function text(body: string): Record<string, unknown> {
  return { action: 'session-text', namespace: 'message', description: { body } };
}

/** Records when each message of interest reaches a client: its own receipts (by mid) and relayed texts (by id). */
function arrivalTimes(client: TestClient): Map<string, number> {
  const times = new Map<string, number>();
  client.socket.on('jsongle', (m: Envelope) => {
    if (isReceipt(m)) times.set(`receipt:${String(m.jsongle.description?.mid)}`, performance.now());
    if (m.jsongle.action === 'session-text') times.set(`text:${m.id}`, performance.now());
  });
  return times;
}

/** Asserts the shape every refusal has: the reason as message, `{ errorCode, errorDetails }` as data. */
function expectRefusal(error: ConnectError, message: string, errorCode: number): void {
  expect(error.message).toBe(message);
  expect(error.data).toEqual({ errorCode, errorDetails: expect.any(String) as unknown });
}

async function stats(server: TestServer): Promise<Record<string, number>> {
  return (await server.rest().get('/stats').expect(200)).body as Record<string, number>;
}

/** jsongle_connections_refused_total for one reason, from GET /metrics. */
async function refusedTotal(server: TestServer, reason: string): Promise<number> {
  const response = await server.rest().get('/metrics').expect(200);
  const line = new RegExp(`^jsongle_connections_refused_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(response.text);
  return Number(line?.[1] ?? 0);
}

describe('maxMessagesPerSecond = 10 (burst 20): one member floods its room', () => {
  const RATE = 10;
  const FLOOD_TICKS = 30;
  const FLOOD_TICK_MS = 50;
  /** 25 messages every 50 ms: 500 per second, 50 times the limit, for 1.5 s. */
  const FLOOD_BATCH = 25;
  /** The other member sends one message every 3 ticks (about 7 per second, under the limit). */
  const STEADY_EVERY = 3;
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ maxMessagesPerSecond: String(RATE) }),
    (started) => (server = started),
    clients,
  );

  test("the flooder gets 429001 for its excess while the other member's messages keep flowing both ways", async () => {
    const rid = 'flooded-room';
    const flooder = await connectAs(server.wsUrl, 'flooder');
    const steady = await connectAs(server.wsUrl, 'steady');
    clients.push(flooder, steady);
    await flooder.join(rid);
    await steady.join(rid);
    await flooder.next(isMemberEvent('joined', steady.sid));
    const flooderArrivals = arrivalTimes(flooder);
    const steadyArrivals = arrivalTimes(steady);

    const flooded: string[] = [];
    const steadySent = new Map<string, number>();
    const started = performance.now();
    for (let tick = 0; tick < FLOOD_TICKS; tick++) {
      for (let i = 0; i < FLOOD_BATCH; i++) flooded.push(flooder.send(rid, text(`flood ${tick}.${i}`)));
      if (tick % STEADY_EVERY === 0) steadySent.set(steady.send(rid, text(`steady ${tick}`)), performance.now());
      // Spreads the flood over time, so that the steady member's messages travel while it lasts.
      await delay(FLOOD_TICK_MS);
    }
    const floodEnded = performance.now();

    // Every message of the steady member is acknowledged to it and delivered to the flooder, in order.
    for (const mid of steadySent.keys()) {
      await steady.next((m) => isReceipt(m) && m.jsongle.description?.mid === mid, 5000, `receipt of ${mid}`);
      await expect(
        flooder.next((m) => m.jsongle.action === 'session-text' && m.id === mid, 5000, `delivery of ${mid}`),
      ).resolves.toMatchObject({ from: rid, to: flooder.sid });
    }

    // Each flooded message gets exactly one answer: a receipt or a 429001 naming it.
    const answers = await eventually(async () => {
      const byMid = new Map<string, 'receipt' | 429001>();
      for (const m of flooder.inbox) {
        const mid = String(m.jsongle.description?.mid);
        if (isReceipt(m)) byMid.set(mid, 'receipt');
        else if (isSessionError(429001)(m)) byMid.set(mid, 429001);
      }
      expect(byMid.size).toBe(flooded.length);
      return byMid;
    }, 10_000);
    const passed = flooded.filter((mid) => answers.get(mid) === 'receipt');
    const refused = flooded.length - passed.length;
    const floodSeconds = (floodEnded - started) / 1000;

    // What passed reached the steady member, in order, and nothing else did.
    const delivered = await eventually(async () => {
      const texts = steady.inbox.filter((m) => m.jsongle.action === 'session-text').map((m) => m.id);
      expect(texts.length).toBe(passed.length);
      return texts;
    }, 5000);
    expect(delivered).toEqual(passed);

    // The steady member's messages travelled during the flood, not after it.
    const latencies = [...steadySent].map(([mid, sentAt]) => ({
      receipt: (steadyArrivals.get(`receipt:${mid}`) ?? Infinity) - sentAt,
      delivery: (flooderArrivals.get(`text:${mid}`) ?? Infinity) - sentAt,
    }));
    const maxReceiptMs = Math.max(...latencies.map((l) => l.receipt));
    const maxDeliveryMs = Math.max(...latencies.map((l) => l.delivery));
    const deliveredDuringFlood = [...steadySent.keys()].filter(
      (mid) => (flooderArrivals.get(`text:${mid}`) ?? Infinity) < floodEnded,
    ).length;
    console.log(
      `floods: ${flooded.length} messages in ${floodSeconds.toFixed(2)} s from one connection (limit ${RATE}/s, burst ${2 * RATE}): ` +
        `${passed.length} relayed, ${refused} refused with 429001; the other member's ${steadySent.size} messages: ` +
        `${deliveredDuringFlood} delivered during the flood, slowest receipt ${maxReceiptMs.toFixed(0)} ms, slowest delivery ${maxDeliveryMs.toFixed(0)} ms`,
    );

    expect(steady.inbox.filter((m) => m.jsongle.action === 'session-error')).toEqual([]);
    expect(refused).toBeGreaterThan(0);
    // The burst (less the hello and the join), plus what refills while the flood lasts, plus slack.
    expect(passed.length).toBeLessThanOrEqual(2 * RATE + RATE * (floodSeconds + 1));
    expect(deliveredDuringFlood).toBeGreaterThanOrEqual(steadySent.size - 2);
    expect(maxReceiptMs).toBeLessThan(2000);
    expect(maxDeliveryMs).toBeLessThan(2000);
    expect(flooder.socket.connected).toBe(true);
    expect(steady.socket.connected).toBe(true);
  });
});

describe('maxMessageBytes = 2048: bursts of oversized envelopes', () => {
  const LIMIT = 2048;
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ maxMessageBytes: String(LIMIT) }),
    (started) => (server = started),
    clients,
  );

  async function pair(rid: string, first: string, second: string, join: 'join' | 'mucJoin'): Promise<[TestClient, TestClient]> {
    const a = await connectAs(server.wsUrl, first);
    const b = await connectAs(server.wsUrl, second);
    clients.push(a, b);
    await a[join](rid);
    await b[join](rid);
    await a.next(isMemberEvent('joined', b.sid));
    return [a, b];
  }

  /** An envelope of about `bytes` bytes: a session-text with padding. */
  function oversized(to: string, bytes: number): { id: string; from: null; to: string; jsongle: Record<string, unknown> } {
    return { id: randomUUID(), from: null, to, jsongle: text('x'.repeat(bytes)) };
  }

  test('a member sending 20 envelopes of 20 KB gets 20 × 413001; its room-mate and another room go on', async () => {
    const [sender, mate] = await pair('big-room', 'sender', 'mate', 'join');
    const [carol, dave] = await pair('#muc#bystanders', 'carol', 'dave', 'mucJoin');

    const big: string[] = [];
    const fromMate: string[] = [];
    const fromCarol: string[] = [];
    for (let i = 0; i < 20; i++) {
      const envelope = oversized('big-room', 20_000);
      big.push(envelope.id);
      sender.emit(envelope);
      if (i % 4 === 0) {
        fromMate.push(mate.send('big-room', text(`mate ${i}`)));
        fromCarol.push(carol.send('#muc#bystanders', text(`carol ${i}`)));
      }
    }

    // The room-mate's messages reach the sender of the oversized ones, in order, and are acknowledged.
    for (const mid of fromMate) {
      await expect(sender.next((m) => m.jsongle.action === 'session-text' && m.id === mid)).resolves.toMatchObject({ from: 'big-room' });
      await mate.next((m) => isReceipt(m) && m.jsongle.description?.mid === mid);
    }
    // The other room does not notice.
    for (const mid of fromCarol) {
      await expect(dave.next((m) => m.jsongle.action === 'session-text' && m.id === mid)).resolves.toMatchObject({
        from: `#muc#bystanders/carol`,
      });
      await carol.next((m) => isReceipt(m) && m.jsongle.description?.mid === mid);
    }
    for (let i = 0; i < big.length; i++) await sender.next(isSessionError(413001), 5000, `413001 number ${i + 1}`);
    await mate.expectNothing((m) => big.includes(m.id));
    expect(sender.inbox).toEqual([]);
    expect(mate.inbox.filter((m) => m.jsongle.action === 'session-error')).toEqual([]);
    expect(carol.inbox.filter((m) => m.jsongle.action === 'session-error')).toEqual([]);

    // And the sender itself is still a member in good standing.
    expect(sender.socket.connected).toBe(true);
    const after = sender.send('big-room', text('small again'));
    await expect(mate.nextAction('session-text')).resolves.toMatchObject({ id: after, from: 'big-room', to: mate.sid });
  });

  test("a frame beyond the transport's cap (max(1 MB, 4 × maxMessageBytes)) closes only its sender's connection, whose room is told left", async () => {
    // server.ts: such a frame closes the transport, so that nobody can make the server buffer megabytes.
    const [eve, frank] = await pair('huge-room', 'eve', 'frank', 'join');
    const [alice, bob] = await pair('calm-room', 'alice', 'bob', 'join');

    const closed = new Promise<string>((resolve) => eve.socket.once('disconnect', resolve));
    eve.emit(oversized('huge-room', 1_500_000));
    const mid = bob.send('calm-room', text('meanwhile'));

    await expect(closed).resolves.toBe('transport close');
    await frank.next(isMemberEvent('left', eve.sid), 5000, 'left of eve');
    await expect(server.server.registry.room('huge-room')).resolves.toMatchObject({ members: [{ sid: frank.sid }] });
    await frank.expectNothing((m) => m.jsongle.action === 'session-text');

    await expect(alice.next((m) => m.id === mid)).resolves.toMatchObject({ from: 'calm-room', to: alice.sid });
    for (const client of [frank, alice, bob]) expect(client.socket.connected).toBe(true);
    await expect(server.server.registry.counts()).resolves.toEqual({ connections: 3, rooms: 2 });
  });
});

describe('maxConnectionsPerAddress = 5: bursts of connections from one address', () => {
  const CAP = 5;
  let server: TestServer;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    server = await startServer({ maxConnectionsPerAddress: String(CAP) });
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    // Each test starts from an empty server.
    await eventually(async () => expect(await server.server.registry.counts()).toEqual({ connections: 0, rooms: 0 }), 5000);
  });
  afterAll(async () => {
    await server.close();
  });

  test('40 at once: exactly 5 are accepted and work, 35 get too-many-connections / 429002, and the refusals free nothing', async () => {
    const refusedBefore = await refusedTotal(server, 'too-many-connections');
    const attempts = await Promise.allSettled(Array.from({ length: 40 }, () => connect(server.wsUrl)));
    const accepted = attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
    const refused = attempts.flatMap((a) => (a.status === 'rejected' ? [a.reason as ConnectError] : []));
    clients.push(...accepted);

    expect(accepted.length).toBe(CAP);
    expect(refused.length).toBe(40 - CAP);
    for (const error of refused) expectRefusal(error, 'too-many-connections', 429002);
    await expect(refusedTotal(server, 'too-many-connections')).resolves.toBe(refusedBefore + 40 - CAP);
    await expect(stats(server)).resolves.toMatchObject({ users_count: CAP });

    // The accepted ones are whole sessions: hello, join, relay.
    for (const [i, client] of accepted.entries()) {
      await expect(client.hello(`burst-${i}`)).resolves.toMatchObject({ jsongle: { action: 'ack', status: 'success' } });
      await client.join('burst-room-' + String(Math.floor(i / 2)));
    }
    const [first, second] = accepted as [TestClient, TestClient];
    await first.next(isMemberEvent('joined', second.sid));
    const mid = second.send('burst-room-0', text('through the burst'));
    await expect(first.nextAction('session-text')).resolves.toMatchObject({ id: mid });

    // 35 refused connections closed, and none of them gave back a slot it never held.
    expectRefusal(await refusal(server.wsUrl), 'too-many-connections', 429002);
    // Closing one accepted connection gives back exactly one slot.
    accepted[CAP - 1]?.close();
    clients.push(await eventually(() => connect(server.wsUrl)));
    expectRefusal(await refusal(server.wsUrl), 'too-many-connections', 429002);
    await expect(stats(server)).resolves.toMatchObject({ users_count: CAP });
  });

  test('connections dropped at every stage of the handshake hold nothing afterwards', async () => {
    const ROUNDS = 4;
    const PER_ROUND = 15;
    for (let round = 0; round < ROUNDS; round++) {
      await Promise.all(
        Array.from({ length: PER_ROUND }, async (_, i) => {
          const stage = i % 3;
          if (stage === 0) {
            // Dropped as soon as the transport is open: before, or while, the gate looks at it.
            const socket = io(server.wsUrl, {
              transports: [DroppableWebSocket],
              rejectUnauthorized: false,
              reconnection: false,
              forceNew: true,
            });
            const closed = new Promise((resolve) => socket.io.once('close', resolve));
            socket.io.once('open', () => {
              const transport = socket.io.engine.transport;
              if (transport instanceof DroppableWebSocket) transport.drop();
            });
            let timer: NodeJS.Timeout | undefined;
            await Promise.race([closed, new Promise((resolve) => (timer = setTimeout(resolve, 5000)))]);
            clearTimeout(timer);
            socket.close();
          } else {
            // Accepted (then dropped before its hello, or after it) or refused as beyond the cap.
            try {
              const client = await connectDroppable(server.wsUrl);
              if (stage === 2) await client.hello(`dropped-${round}-${i}`);
              drop(client);
              client.close();
            } catch (error) {
              expectRefusal(error as ConnectError, 'too-many-connections', 429002);
            }
          }
        }),
      );
    }

    await eventually(async () => {
      expect(await server.server.registry.counts()).toEqual({ connections: 0, rooms: 0 });
      expect(await stats(server)).toMatchObject({ users_count: 0 });
    }, 5000);
    // The whole allowance of the address is free again: CAP are accepted, the next is refused.
    for (let i = 0; i < CAP; i++) clients.push(await eventually(() => connect(server.wsUrl), 5000));
    expectRefusal(await refusal(server.wsUrl), 'too-many-connections', 429002);
  });
});
