import { randomUUID } from 'node:crypto';
import type { Envelope } from '../src/protocol/envelope';
import { connectAs, type TestClient } from './helpers/client';
import { startServer, withServer, type TestServer } from './helpers/server';

/**
 * PROTOCOL.md §5: what a room's members receive of each other's messages, the rules checked in
 * order, the server's answers to the sender, and session-metrics. The P2P propose/trying exchange
 * is in p2p-call.test.ts.
 */

const SERVER_ID = 'jsongle-server';
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// Jest's asymmetric matchers are typed `any`; held as `unknown` they go in expected objects safely.
const A_UUID: unknown = expect.stringMatching(UUID);
const AN_ISO_TIME: unknown = expect.stringMatching(ISO_TIME);
const A_SENTENCE: unknown = expect.stringMatching(/\w+/);

const CALL_ACTIONS = [
  'session-propose',
  'session-info',
  'session-proceed',
  'session-initiate',
  'transport-info',
  'session-decline',
  'session-retract',
  'session-accept',
  'session-terminate',
];

/** Sends a raw envelope with a fresh id, a forged `from` (the server must ignore it) and `to` = the room. */
function sendToRoom(client: TestClient, rid: string, jsongle: Record<string, unknown>): string {
  const id = randomUUID();
  client.emit({ id, from: 'mallory', to: rid, jsongle });
  return id;
}

function expectSessionError(received: Envelope, client: TestClient, errorCode: number, mid: string): void {
  expect(received).toEqual({
    id: A_UUID,
    from: SERVER_ID,
    to: client.sid,
    jsongle: { action: 'session-error', description: { errorCode, errorDetails: A_SENTENCE, mid } },
  });
}

/** The delivery receipt of §5 rule 5. */
function expectReceipt(received: Envelope, client: TestClient, namespace: string, mid: string): void {
  expect(received).toEqual({
    id: A_UUID,
    from: SERVER_ID,
    to: client.sid,
    jsongle: { action: 'session-event', namespace, event: 'ack', description: { mid, type: 'server-received', acknowledged: AN_ISO_TIME } },
  });
}

const isIsoTime = (value: unknown) => typeof value === 'string' && ISO_TIME.test(value) && new Date(value).toJSON() === value;

/** A message relayed from a member, as opposed to one the server wrote itself. */
const isRelayed = (m: Envelope) => m.from !== SERVER_ID;

/** Resolves once the server has handled everything `client` sent before: its messages are handled in order (§6). */
async function barrier(client: TestClient): Promise<void> {
  const answer = await client.leave(`barrier-${randomUUID()}`);
  expect(answer.jsongle.description?.errorCode).toBe(404002);
}

/** The value of one sample line of a Prometheus text exposition (`name{labels} value`). */
function sample(exposition: string, series: string): number | undefined {
  const line = exposition.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('relaying (PROTOCOL.md §5)', () => {
  let server: TestServer;
  const clients: TestClient[] = [];
  const open = async (...uids: string[]) => {
    const opened = await Promise.all(uids.map((uid) => connectAs(server.wsUrl, uid)));
    clients.push(...opened);
    return opened;
  };
  /** Two clients in a fresh P2P room, the join events taken. */
  const pair = async (rid: string): Promise<[TestClient, TestClient]> => {
    const [alice, bob] = await open('alice', 'bob');
    if (!alice || !bob) throw new Error('two clients expected');
    await alice.join(rid);
    await bob.join(rid);
    await alice.nextAction('session-event', { event: 'joined' });
    return [alice, bob];
  };
  /** Three clients in a fresh MUC room, the join events taken. */
  const trio = async (rid: string): Promise<[TestClient, TestClient, TestClient]> => {
    const [alice, bob, carol] = await open('alice', 'bob', 'carol');
    if (!alice || !bob || !carol) throw new Error('three clients expected');
    for (const client of [alice, bob, carol]) await client.mucJoin(rid);
    await alice.nextAction('session-event', { event: 'joined' });
    await alice.nextAction('session-event', { event: 'joined' });
    await bob.nextAction('session-event', { event: 'joined' });
    return [alice, bob, carol];
  };

  withServer(
    () => startServer(),
    (started) => (server = started),
    clients,
  );

  test('P2P: from = rid, to = recipient, id kept, a sent time kept, relayed added, every other field unchanged', async () => {
    const [alice, bob] = await pair('relay-p2p');
    const jsongle = {
      action: 'session-initiate',
      namespace: 'call',
      sid: 'call-7',
      initiator: 'alice',
      responder: 'bob',
      transaction: 'tx-7',
      reason: 'because',
      status: 'pending',
      event: 'none',
      description: { sdp: 'v=0\r\n', nested: { list: [1, 'two', null], flag: true }, sent: '2020-01-02T03:04:05.678Z' },
    };
    const mid = sendToRoom(alice, 'relay-p2p', jsongle);

    const relayed = await bob.nextAction('session-initiate');
    expect(relayed).toEqual({
      id: mid,
      from: 'relay-p2p',
      to: bob.sid,
      jsongle: { ...jsongle, description: { ...jsongle.description, relayed: AN_ISO_TIME } },
    });
    await alice.expectNothing(isRelayed);
  });

  test('P2P and MUC: fields of the envelope beyond id, from, to and jsongle travel unchanged (§5)', async () => {
    const [alice, bob] = await pair('relay-extra');
    const extra = { trace: 'abc', nested: { list: [1, 2] } };
    const p2p = randomUUID();
    alice.emit({ id: p2p, from: null, to: 'relay-extra', jsongle: { action: 'session-custom', namespace: 'message' }, ...extra });
    expect(await bob.next((m) => m.id === p2p)).toMatchObject({ ...extra, from: 'relay-extra', to: bob.sid });

    await alice.mucJoin('#muc#relay-extra');
    await bob.mucJoin('#muc#relay-extra');
    const muc = randomUUID();
    alice.emit({ id: muc, from: null, to: '#muc#relay-extra', jsongle: { action: 'session-custom', namespace: 'muc' }, ...extra });
    expect(await bob.next((m) => m.id === muc)).toMatchObject({ ...extra, from: '#muc#relay-extra/alice', to: bob.sid });
  });

  test('P2P: a description without sent gets sent and relayed; a message without description gets one', async () => {
    const [alice, bob] = await pair('relay-sent');
    const before = new Date().toJSON();
    const withDescription = sendToRoom(alice, 'relay-sent', { action: 'session-info', namespace: 'call', sid: 's', description: { x: 1 } });
    const without = sendToRoom(alice, 'relay-sent', { action: 'session-custom', namespace: 'message' });

    const first = await bob.nextAction('session-info');
    expect(first).toMatchObject({ id: withDescription, from: 'relay-sent', to: bob.sid });
    expect(first.jsongle).toEqual({
      action: 'session-info',
      namespace: 'call',
      sid: 's',
      description: { x: 1, sent: AN_ISO_TIME, relayed: AN_ISO_TIME },
    });
    const second = await bob.nextAction('session-custom');
    expect(second).toEqual({
      id: without,
      from: 'relay-sent',
      to: bob.sid,
      jsongle: { action: 'session-custom', namespace: 'message', description: { sent: AN_ISO_TIME, relayed: AN_ISO_TIME } },
    });
    for (const description of [first.jsongle.description, second.jsongle.description]) {
      expect(isIsoTime(description?.sent) && isIsoTime(description?.relayed)).toBe(true);
      // Both times are the server's own: the time it relayed the message.
      expect(description?.sent).toBe(description?.relayed);
      expect(String(description?.relayed) >= before).toBe(true);
    }
  });

  test('P2P: session-text gets a receipt in the namespace it was sent with', async () => {
    const [alice, bob] = await pair('relay-text');
    const mid = sendToRoom(alice, 'relay-text', { action: 'session-text', namespace: 'message', description: { body: 'hello' } });
    expect(await bob.nextAction('session-text')).toEqual({
      id: mid,
      from: 'relay-text',
      to: bob.sid,
      jsongle: {
        action: 'session-text',
        namespace: 'message',
        description: { body: 'hello', sent: AN_ISO_TIME, relayed: AN_ISO_TIME },
      },
    });
    expectReceipt(await alice.nextAction('session-event', { event: 'ack' }), alice, 'message', mid);
    await bob.expectNothing((m) => m.jsongle.event === 'ack');
  });

  test('MUC: from = rid/uid to every other member; session-text and session-custom get receipts', async () => {
    const rid = '#muc#relay';
    const [alice, bob, carol] = await trio(rid);

    for (const action of ['session-text', 'session-custom']) {
      const description = { body: `${action} from alice`, sent: '2021-05-06T07:08:09.010Z' };
      const mid = sendToRoom(alice, rid, { action, namespace: 'muc', description });
      for (const recipient of [bob, carol]) {
        expect(await recipient.nextAction(action)).toEqual({
          id: mid,
          from: `${rid}/alice`,
          to: recipient.sid,
          jsongle: { action, namespace: 'muc', description: { ...description, relayed: AN_ISO_TIME } },
        });
      }
      expectReceipt(await alice.nextAction('session-event', { event: 'ack' }), alice, 'muc', mid);
    }

    const mid = sendToRoom(carol, rid, { action: 'session-text', namespace: 'muc', description: { body: 'from carol' } });
    for (const recipient of [alice, bob]) {
      const relayed = await recipient.nextAction('session-text');
      expect(relayed).toMatchObject({ id: mid, from: `${rid}/carol`, to: recipient.sid });
    }
    expectReceipt(await carol.nextAction('session-event', { event: 'ack' }), carol, 'muc', mid);
    await Promise.all([alice, bob, carol].map((client) => client.expectNothing()));
  });

  test('MUC: session-event is relayed without a receipt', async () => {
    const rid = '#muc#relay-event';
    const [alice, bob, carol] = await trio(rid);
    const mid = sendToRoom(alice, rid, { action: 'session-event', namespace: 'muc', event: 'composing', description: { state: 'on' } });
    for (const recipient of [bob, carol]) {
      expect(await recipient.nextAction('session-event', { event: 'composing' })).toEqual({
        id: mid,
        from: `${rid}/alice`,
        to: recipient.sid,
        jsongle: {
          action: 'session-event',
          namespace: 'muc',
          event: 'composing',
          description: { state: 'on', sent: AN_ISO_TIME, relayed: AN_ISO_TIME },
        },
      });
    }
    await alice.expectNothing();
  });

  test.each(CALL_ACTIONS)('MUC: the call action %s gets session-error 405001 and reaches no one', async (action) => {
    const rid = `#muc#calls-${action}`;
    const [alice, bob, carol] = await trio(rid);
    const mid = sendToRoom(alice, rid, { action, namespace: 'muc', sid: 'call-1', initiator: 'alice', responder: 'bob' });
    expectSessionError(await alice.nextAction('session-error'), alice, 405001, mid);
    await Promise.all([bob.expectNothing(), carol.expectNothing(), alice.expectNothing()]);
  });

  test.each(['session-propose', 'transport-info', 'session-terminate'])(
    'P2P alone: %s gets back session-info unreachable with its sid, initiator and responder',
    async (action) => {
      const [alice] = await open('alice');
      if (!alice) throw new Error('one client expected');
      await alice.join(`alone-${action}`);
      sendToRoom(alice, `alone-${action}`, { action, namespace: 'call', sid: 'call-9', initiator: 'alice', responder: 'bob' });
      expect(await alice.nextAction('session-info')).toEqual({
        id: A_UUID,
        from: SERVER_ID,
        to: alice.sid,
        jsongle: {
          action: 'session-info',
          namespace: 'call',
          sid: 'call-9',
          initiator: 'alice',
          responder: 'bob',
          reason: 'unreachable',
          description: { ended: AN_ISO_TIME },
        },
      });
      // No `trying` after an unreachable propose, and nothing else.
      await alice.expectNothing();
    },
  );

  test.each(['session-text', 'session-custom', 'session-event'])('P2P alone: %s gets session-error 404003', async (action) => {
    const [alice] = await open('alice');
    if (!alice) throw new Error('one client expected');
    await alice.join(`alone-${action}`);
    const mid = sendToRoom(alice, `alone-${action}`, { action, namespace: 'message', description: { body: 'anyone?' } });
    expectSessionError(await alice.nextAction('session-error'), alice, 404003, mid);
    await alice.expectNothing();
  });

  test('MUC alone: a session-text reaches no one and is still acknowledged', async () => {
    const [alice] = await open('alice');
    if (!alice) throw new Error('one client expected');
    await alice.mucJoin('#muc#alone');
    const mid = sendToRoom(alice, '#muc#alone', { action: 'session-text', namespace: 'muc', description: { body: 'echo?' } });
    expectReceipt(await alice.nextAction('session-event', { event: 'ack' }), alice, 'muc', mid);
  });

  test('a sender that is not a member gets session-error 404002, whatever the room and the action', async () => {
    const [alice, bob] = await pair('members-only');
    const [carol, dave] = await open('carol', 'dave');
    if (!carol || !dave) throw new Error('two clients expected');
    await dave.mucJoin('#muc#members-only');

    const attempts: [string, string][] = [
      ['members-only', 'session-text'],
      ['members-only', 'session-propose'],
      ['no-such-room', 'session-text'],
      [SERVER_ID, 'session-text'],
      // Rule 1 comes before rule 2: a call action to a MUC room one is not in is 404002, not 405001.
      ['#muc#members-only', 'session-propose'],
      ['#muc#members-only', 'session-text'],
    ];
    for (const [rid, action] of attempts) {
      const mid = sendToRoom(carol, rid, { action, namespace: 'call', sid: 'x', description: { body: 'let me in' } });
      expectSessionError(await carol.nextAction('session-error'), carol, 404002, mid);
    }
    await Promise.all([alice, bob, dave].map((client) => client.expectNothing()));

    // Nor once one has left.
    await alice.leave('members-only');
    const mid = sendToRoom(alice, 'members-only', { action: 'session-text', namespace: 'message' });
    expectSessionError(await alice.nextAction('session-error'), alice, 404002, mid);
    await bob.expectNothing(isRelayed);
  });

  test('50 transport-info sent back to back arrive in order, each way', async () => {
    const [alice, bob] = await pair('relay-order');
    const count = 50;
    const sent = { alice: [] as string[], bob: [] as string[] };
    for (let seq = 0; seq < count; seq++) {
      const candidate = (who: string) => ({
        action: 'transport-info',
        namespace: 'call',
        sid: 'call-o',
        description: { seq, candidate: `candidate:${seq} 1 udp 2122260223 192.0.2.${seq} ${50000 + seq} typ host (${who})` },
      });
      sent.alice.push(sendToRoom(alice, 'relay-order', candidate('alice')));
      sent.bob.push(sendToRoom(bob, 'relay-order', candidate('bob')));
    }
    const receive = async (client: TestClient) => {
      const received: Envelope[] = [];
      for (let i = 0; i < count; i++) received.push(await client.nextAction('transport-info'));
      return received;
    };
    const [atBob, atAlice] = await Promise.all([receive(bob), receive(alice)]);
    expect(atBob.map((m) => m.id)).toEqual(sent.alice);
    expect(atBob.map((m) => m.jsongle.description?.seq)).toEqual([...Array(count).keys()]);
    expect(atAlice.map((m) => m.id)).toEqual(sent.bob);
    expect(atAlice.map((m) => m.jsongle.description?.seq)).toEqual([...Array(count).keys()]);
    expect(atBob.every((m) => m.from === 'relay-order' && m.to === bob.sid)).toBe(true);
  });
});

describe('session-metrics and relay metrics (PROTOCOL.md §5, §9)', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer(),
    (started) => (server = started),
    clients,
  );

  test('session-metrics is read into /metrics and not relayed; relays are counted by action', async () => {
    const alice = await connectAs(server.wsUrl, 'alice');
    const bob = await connectAs(server.wsUrl, 'bob');
    clients.push(alice, bob);
    const metrics = async () => (await server.rest().get('/metrics').expect(200)).text;

    const before = await metrics();
    expect(sample(before, 'jsongle_call_duration_seconds_count')).toBe(0);
    expect(sample(before, 'jsongle_calls_failed_total')).toBe(0);
    expect(sample(before, 'jsongle_messages_relayed_total{action="session-text"}')).toBeUndefined();

    await alice.join('metrics-room');
    await bob.join('metrics-room');
    await alice.nextAction('session-event', { event: 'joined' });

    alice.send(SERVER_ID, { action: 'session-metrics', namespace: 'call', sid: 'call-m', description: { duration: 42 } });
    alice.send('metrics-room', { action: 'session-metrics', namespace: 'call', sid: 'call-m', description: { error: 'ice-failed' } });
    // Another error than ice-failed is no failed call.
    bob.send('metrics-room', { action: 'session-metrics', namespace: 'call', sid: 'call-m', description: { error: 'other' } });
    for (let i = 0; i < 3; i++) alice.send('metrics-room', { action: 'session-text', namespace: 'message', description: { body: `${i}` } });
    for (let i = 0; i < 3; i++) await bob.nextAction('session-text');
    await Promise.all([barrier(alice), barrier(bob)]);
    await Promise.all([
      bob.expectNothing((m) => m.jsongle.action === 'session-metrics'),
      alice.expectNothing((m) => m.jsongle.action === 'session-metrics'),
    ]);

    const after = await metrics();
    expect(sample(after, 'jsongle_call_duration_seconds_count')).toBe(1);
    expect(sample(after, 'jsongle_call_duration_seconds_sum')).toBe(42);
    expect(sample(after, 'jsongle_call_duration_seconds_bucket{le="60"}')).toBe(1);
    expect(sample(after, 'jsongle_call_duration_seconds_bucket{le="30"}')).toBe(0);
    expect(sample(after, 'jsongle_calls_failed_total')).toBe(1);
    expect(sample(after, 'jsongle_messages_relayed_total{action="session-text"}')).toBe(3);
    expect(sample(after, 'jsongle_messages_relayed_total{action="session-metrics"}')).toBeUndefined();

    // A refused relay is no relay.
    await bob.leave('metrics-room');
    alice.send('metrics-room', { action: 'session-text', namespace: 'message' });
    expect((await alice.nextAction('session-error')).jsongle.description?.errorCode).toBe(404003);
    expect(sample(await metrics(), 'jsongle_messages_relayed_total{action="session-text"}')).toBe(3);
  });

  test('a session-metrics with a bad description gets session-error 400001 and counts nothing', async () => {
    const alice = await connectAs(server.wsUrl, 'alice');
    clients.push(alice);
    const before = await server.rest().get('/metrics').expect(200);
    for (const description of [{ duration: -1 }, { duration: 'long' }, { error: 42 }]) {
      const mid = alice.send(SERVER_ID, { action: 'session-metrics', namespace: 'call', description });
      expectSessionError(await alice.nextAction('session-error'), alice, 400001, mid);
    }
    const after = await server.rest().get('/metrics').expect(200);
    for (const series of ['jsongle_call_duration_seconds_count', 'jsongle_calls_failed_total']) {
      expect(sample(after.text, series)).toBe(sample(before.text, series));
    }
  });
});

describe('byte counters recv_total and sent_total (PROTOCOL.md §9)', () => {
  let server: TestServer;
  const clients: TestClient[] = [];
  /** The two counters in bytes (they are kept in MB). */
  const bytes = async () => {
    const body = (await server.rest().get('/stats').expect(200)).body as Record<string, number>;
    return { recv: (body.recv_total ?? NaN) * 1e6, sent: (body.sent_total ?? NaN) * 1e6 };
  };
  /** Socket.IO frames an event as `42["jsongle",<envelope>]`: allow that much beyond the JSON itself. */
  const FRAMING = 16;
  const json = (value: unknown) => Buffer.byteLength(JSON.stringify(value));

  withServer(
    () => startServer(),
    (started) => (server = started),
    clients,
  );

  test('a MUC message counts once in recv_total and once per delivered copy (and the receipt) in sent_total', async () => {
    const [alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map((uid) => connectAs(server.wsUrl, uid)));
    if (!alice || !bob || !carol) throw new Error('three clients expected');
    clients.push(alice, bob, carol);
    for (const client of [alice, bob, carol]) await client.mucJoin('#muc#bytes');
    await alice.nextAction('session-event', { event: 'joined' });
    await alice.nextAction('session-event', { event: 'joined' });
    await bob.nextAction('session-event', { event: 'joined' });
    const before = await bytes();

    const message = {
      id: randomUUID(),
      from: null,
      to: '#muc#bytes',
      jsongle: { action: 'session-text', namespace: 'muc', description: { body: 'é'.repeat(5000) } },
    };
    alice.emit(message);
    const delivered = [
      await bob.nextAction('session-text'),
      await carol.nextAction('session-text'),
      await alice.nextAction('session-event', { event: 'ack' }),
    ];
    const after = await bytes();

    const received = after.recv - before.recv;
    expect(received).toBeGreaterThanOrEqual(json(message) - 0.5);
    expect(received).toBeLessThanOrEqual(json(message) + FRAMING);
    const sent = after.sent - before.sent;
    const sentJson = delivered.reduce((sum, envelope) => sum + json(envelope), 0);
    expect(sent).toBeGreaterThanOrEqual(sentJson - 0.5);
    expect(sent).toBeLessThanOrEqual(sentJson + FRAMING * delivered.length);
  });

  test('events other than jsongle are not counted in recv_total', async () => {
    const alice = await connectAs(server.wsUrl, 'alice');
    clients.push(alice);
    const before = await bytes();

    // An event the server does not handle, well under maxMessageBytes.
    alice.socket.emit('not-jsongle', { blob: 'x'.repeat(20000) });
    // A request of alice's is handled after what she sent before it.
    const request = {
      id: randomUUID(),
      from: null,
      to: SERVER_ID,
      jsongle: { action: 'iq-set', query: 'session-leave', transaction: 't', description: { rid: 'nowhere' } },
    };
    alice.emit(request);
    const answer = await alice.nextAction('iq-error');
    const after = await bytes();

    expect(after.sent - before.sent).toBeLessThanOrEqual(json(answer) + FRAMING);
    // Only the request counts: "MB received in jsongle events".
    expect(after.recv - before.recv).toBeLessThanOrEqual(json(request) + FRAMING);
  });
});

/**
 * The server writes relayed messages as pre-built WebSocket frames (src/signaling/frames.ts), and
 * as plain packets over HTTP long-polling: every frame length class of RFC 6455 and both
 * transports must carry a message intact, to each member its own `to`.
 */
describe('frames of every size, over WebSocket and long-polling', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer({ maxMessageBytes: String(256 * 1024) }),
    (started) => (server = started),
    clients,
  );

  test.each([
    ['a 16-bit length', 3_000],
    ['a 64-bit length', 100_000],
  ])('a MUC message with %s (%d bytes of text) reaches a WebSocket member and a polling member intact', async (_kind, size) => {
    const rid = `#muc#frames-${size}`;
    const sender = await connectAs(server.wsUrl, 'sender');
    const overWebSocket = await connectAs(server.wsUrl, 'ws');
    const overPolling = await connectAs(server.wsUrl, 'polling', { transports: ['polling'] });
    clients.push(sender, overWebSocket, overPolling);
    for (const client of [sender, overWebSocket, overPolling]) await client.mucJoin(rid);

    // Multi-byte characters, so that bytes and characters differ.
    const body = 'é€𝄞x'.repeat(Math.ceil(size / 10)).slice(0, size);
    const mid = sender.send(rid, { action: 'session-text', namespace: 'muc', description: { body } });
    for (const member of [overWebSocket, overPolling]) {
      const received = await member.next((m) => m.id === mid);
      expect(received.to).toBe(member.sid);
      expect(received.from).toBe(`${rid}/sender`);
      expect(received.jsongle.description?.body).toBe(body);
    }
  });
});
