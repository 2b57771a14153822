import { randomUUID } from 'node:crypto';
import type { Envelope } from '../src/protocol/envelope';
import { connectAs, type TestClient } from './helpers/client';
import { startServer, withServer, type TestServer } from './helpers/server';

/** PROTOCOL.md §4: session-join, muc-join, session-leave, and the joined/left events. */

const SERVER_ID = 'jsongle-server';
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// Jest's asymmetric matchers are typed `any`; held as `unknown` they go in expected objects safely.
const A_UUID: unknown = expect.stringMatching(UUID);
const AN_ISO_TIME: unknown = expect.stringMatching(ISO_TIME);
const A_STRING: unknown = expect.any(String);
const A_SENTENCE: unknown = expect.stringMatching(/\w+/);

type Namespace = 'room' | 'muc';

/** A member as the server describes it: `{ uid, dn?, sid }`. */
const memberOf = (client: TestClient, dn?: string) =>
  dn === undefined ? { uid: client.uid, sid: client.sid } : { uid: client.uid, dn, sid: client.sid };

/** Sends an iq-set with a transaction of our own and resolves with the answer that repeats it. */
async function request(client: TestClient, query: string, description: unknown, namespace: string): Promise<[Envelope, string]> {
  const transaction = randomUUID();
  const jsongle: Record<string, unknown> = { action: 'iq-set', query, namespace, transaction };
  if (description !== undefined) jsongle.description = description;
  client.send(SERVER_ID, jsongle);
  const answer = await client.next((m) => m.jsongle.transaction === transaction, undefined, `answer to ${query}`);
  return [answer, transaction];
}

function expectIqResult(answer: Envelope, client: TestClient, query: string, description: Record<string, unknown>): void {
  expect(answer).toEqual({
    id: A_UUID,
    from: SERVER_ID,
    to: client.sid,
    jsongle: { action: 'iq-result', query, transaction: A_STRING, description },
  });
}

function expectIqError(answer: Envelope, client: TestClient, query: string, errorCode: number, transaction?: string): void {
  expect(answer).toEqual({
    id: A_UUID,
    from: SERVER_ID,
    to: client.sid,
    jsongle: {
      action: 'iq-error',
      query,
      transaction: transaction ?? A_STRING,
      description: { errorCode, errorDetails: A_SENTENCE },
    },
  });
}

/** A join answer: the room, the members already there (in join order), the time of the join. */
function expectJoined(answer: Envelope, client: TestClient, query: string, rid: string, members: Record<string, unknown>[]): void {
  expectIqResult(answer, client, query, { rid, members, joined: AN_ISO_TIME });
}

/** Takes the next `joined`/`left` session-event of `client` and checks every field of it. */
async function expectMemberEvent(
  client: TestClient,
  event: 'joined' | 'left',
  namespace: Namespace,
  rid: string,
  member: Record<string, unknown>,
): Promise<void> {
  const received = await client.next(
    (m) => m.jsongle.action === 'session-event' && m.jsongle.event === event && m.jsongle.description?.rid === rid,
    undefined,
    `${event} event of ${rid}`,
  );
  expect(received).toEqual({
    id: A_UUID,
    from: SERVER_ID,
    to: client.sid,
    jsongle: { action: 'session-event', namespace, event, description: { rid, member } },
  });
}

const isMemberEvent = (m: Envelope) => m.jsongle.action === 'session-event';

/** Polls `read` until `accept` holds, for at most `timeoutMs`. */
async function eventually<T>(read: () => Promise<T>, accept: (value: T) => boolean, what: string, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (accept(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('rooms (PROTOCOL.md §4)', () => {
  let server: TestServer;
  const clients: TestClient[] = [];
  const open = async (uid: string, dn?: string) => {
    const client = await connectAs(server.wsUrl, uid, dn === undefined ? {} : { dn });
    clients.push(client);
    return client;
  };

  withServer(
    () => startServer({ maxMembersPerMultiRoom: '3', maxMultiRoomPerUser: '2' }),
    (started) => (server = started),
    clients,
  );

  test('session-join answers { rid, members, joined } with the members already there, and tells them', async () => {
    const alice = await open('alice', 'Alice');
    const bob = await open('bob');

    const [first, transaction] = await request(alice, 'session-join', { rid: 'shape-p2p' }, 'room');
    expectJoined(first, alice, 'session-join', 'shape-p2p', []);
    expect(first.jsongle.transaction).toBe(transaction);

    const second = await bob.join('shape-p2p');
    expectJoined(second, bob, 'session-join', 'shape-p2p', [memberOf(alice, 'Alice')]);
    await expectMemberEvent(alice, 'joined', 'room', 'shape-p2p', memberOf(bob));
    // The joiner is not told about itself.
    await bob.expectNothing(isMemberEvent);
  });

  test('muc-join answers the same shape and tells every other member in namespace muc', async () => {
    const alice = await open('alice', 'Alice');
    const bob = await open('bob');
    const carol = await open('carol', 'Carol');

    expectJoined(await alice.mucJoin('#muc#shape'), alice, 'muc-join', '#muc#shape', []);
    expectJoined(await bob.mucJoin('#muc#shape'), bob, 'muc-join', '#muc#shape', [memberOf(alice, 'Alice')]);
    await expectMemberEvent(alice, 'joined', 'muc', '#muc#shape', memberOf(bob));

    expectJoined(await carol.mucJoin('#muc#shape'), carol, 'muc-join', '#muc#shape', [memberOf(alice, 'Alice'), memberOf(bob)]);
    await expectMemberEvent(alice, 'joined', 'muc', '#muc#shape', memberOf(carol, 'Carol'));
    await expectMemberEvent(bob, 'joined', 'muc', '#muc#shape', memberOf(carol, 'Carol'));
    await carol.expectNothing(isMemberEvent);
  });

  test('two connections of one uid are two members, told apart by sid', async () => {
    const phone = await open('dave', 'Dave');
    const laptop = await open('dave', 'Dave');
    expect(phone.sid).not.toBe(laptop.sid);

    await phone.join('same-uid');
    expectJoined(await laptop.join('same-uid'), laptop, 'session-join', 'same-uid', [memberOf(phone, 'Dave')]);
    await expectMemberEvent(phone, 'joined', 'room', 'same-uid', memberOf(laptop, 'Dave'));
  });

  describe.each(['session-join', 'muc-join', 'session-leave'])('%s with a bad rid', (query) => {
    const namespace = query === 'muc-join' ? 'muc' : 'room';
    test.each([
      ['missing', {}],
      ['empty', { rid: '' }],
      ['257 characters long', { rid: 'r'.repeat(257) }],
      ['a number', { rid: 42 }],
      ['null', { rid: null }],
      ['an array', { rid: ['room'] }],
      ['an object', { rid: { rid: 'room' } }],
    ])('gets iq-error 400001 when rid is %s', async (_case, description) => {
      const alice = await open('alice');
      const [answer, transaction] = await request(alice, query, description, namespace);
      expectIqError(answer, alice, query, 400001, transaction);
    });

    test('gets iq-error 400001 without a description', async () => {
      const alice = await open('alice');
      const [answer, transaction] = await request(alice, query, undefined, namespace);
      expectIqError(answer, alice, query, 400001, transaction);
    });
  });

  test('a rid of exactly 256 characters is accepted by both joins', async () => {
    const alice = await open('alice');
    const p2p = 'p'.repeat(256);
    const muc = `#muc#${'m'.repeat(251)}`;
    expectJoined(await alice.join(p2p), alice, 'session-join', p2p, []);
    expectJoined(await alice.mucJoin(muc), alice, 'muc-join', muc, []);
    expectIqResult(await alice.leave(p2p), alice, 'session-leave', { rid: p2p });
    expectIqResult(await alice.leave(muc), alice, 'session-leave', { rid: muc });
  });

  test('session-join on a rid with the #muc# prefix gets 400001 and creates no room; muc-join takes it', async () => {
    const alice = await open('alice');
    expectIqError(await alice.join('#muc#reserved'), alice, 'session-join', 400001);
    await expect(server.server.registry.room('#muc#reserved')).resolves.toBeUndefined();
    expectJoined(await alice.mucJoin('#muc#reserved'), alice, 'muc-join', '#muc#reserved', []);
    // Once the MUC room exists the prefix is still what refuses it, not its kind.
    const bob = await open('bob');
    expectIqError(await bob.join('#muc#reserved'), bob, 'session-join', 400001);
  });

  test('a third member of a P2P room gets 403001; nobody is told', async () => {
    const alice = await open('alice');
    const bob = await open('bob');
    const carol = await open('carol');
    await alice.join('p2p-full');
    await bob.join('p2p-full');
    await alice.nextAction('session-event', { event: 'joined' });

    expectIqError(await carol.join('p2p-full'), carol, 'session-join', 403001);
    await Promise.all([alice.expectNothing(isMemberEvent), bob.expectNothing(isMemberEvent)]);
    const room = await server.server.registry.room('p2p-full');
    expect(room?.members.map((m) => m.sid)).toEqual([alice.sid, bob.sid]);
  });

  test('muc-join into a P2P room and session-join into a MUC room get 409002', async () => {
    const alice = await open('alice');
    const bob = await open('bob');
    await alice.join('kind-p2p');
    expectIqError(await bob.mucJoin('kind-p2p'), bob, 'muc-join', 409002);
    // Even for its own member: a room's kind is fixed by its first join.
    expectIqError(await alice.mucJoin('kind-p2p'), alice, 'muc-join', 409002);

    await alice.mucJoin('kind-muc');
    expectIqError(await bob.join('kind-muc'), bob, 'session-join', 409002);
    expectIqError(await alice.join('kind-muc'), alice, 'session-join', 409002);

    await alice.expectNothing(isMemberEvent);
    await expect(server.server.registry.room('kind-p2p')).resolves.toMatchObject({ kind: 'p2p', members: [memberOf(alice)] });
    await expect(server.server.registry.room('kind-muc')).resolves.toMatchObject({ kind: 'muc', members: [memberOf(alice)] });
  });

  test('with maxMembersPerMultiRoom=3 the 4th member of a MUC room gets 403001; nobody is told', async () => {
    const [m1, m2, m3] = [await open('m1'), await open('m2'), await open('m3')];
    const members = [m1, m2, m3];
    for (const member of members) await member.mucJoin('#muc#capacity');
    await expectMemberEvent(m1, 'joined', 'muc', '#muc#capacity', memberOf(m2));
    await expectMemberEvent(m1, 'joined', 'muc', '#muc#capacity', memberOf(m3));
    await expectMemberEvent(m2, 'joined', 'muc', '#muc#capacity', memberOf(m3));

    const fourth = await open('m4');
    expectIqError(await fourth.mucJoin('#muc#capacity'), fourth, 'muc-join', 403001);
    await Promise.all(members.map((member) => member.expectNothing(isMemberEvent)));

    // A seat freed is a seat taken.
    await m1.leave('#muc#capacity');
    expectJoined(await fourth.mucJoin('#muc#capacity'), fourth, 'muc-join', '#muc#capacity', [memberOf(m2), memberOf(m3)]);
    await expectMemberEvent(m2, 'joined', 'muc', '#muc#capacity', memberOf(fourth));
  });

  test('with maxMultiRoomPerUser=2 a third MUC room gets 403003; P2P rooms do not count', async () => {
    const alice = await open('alice');
    await alice.join('limit-p2p-1');
    await alice.join('limit-p2p-2');
    await alice.mucJoin('#muc#limit-1');
    await alice.mucJoin('#muc#limit-2');

    expectIqError(await alice.mucJoin('#muc#limit-3'), alice, 'muc-join', 403003);
    await expect(server.server.registry.room('#muc#limit-3')).resolves.toBeUndefined();
    // Joining again one of its rooms is no new room.
    expectJoined(await alice.mucJoin('#muc#limit-2'), alice, 'muc-join', '#muc#limit-2', []);
    // The limit is per connection: another device of the same user has its own.
    const device = await open('alice');
    expectJoined(await device.mucJoin('#muc#limit-3'), device, 'muc-join', '#muc#limit-3', []);

    await alice.leave('#muc#limit-1');
    expectJoined(await alice.mucJoin('#muc#limit-3'), alice, 'muc-join', '#muc#limit-3', [memberOf(device)]);
  });

  test.each([
    ['session-join', 'room', 'again-p2p'],
    ['muc-join', 'muc', '#muc#again'],
  ] as const)('%s of a room one is in succeeds with the current members and tells no one', async (query, namespace, rid) => {
    const alice = await open('alice', 'Alice');
    const bob = await open('bob');
    await alice.iq(query, { rid }, namespace);
    await bob.iq(query, { rid }, namespace);
    await expectMemberEvent(alice, 'joined', namespace, rid, memberOf(bob));

    expectJoined(await bob.iq(query, { rid }, namespace), bob, query, rid, [memberOf(alice, 'Alice')]);
    expectJoined(await alice.iq(query, { rid }, namespace), alice, query, rid, [memberOf(bob)]);
    await Promise.all([alice.expectNothing(isMemberEvent), bob.expectNothing(isMemberEvent)]);
    const room = await server.server.registry.room(rid);
    expect(room?.members.map((m) => m.sid)).toEqual([alice.sid, bob.sid]);
  });

  test.each([
    ['session-join', 'room', 'leave-p2p'],
    ['muc-join', 'muc', '#muc#leave'],
  ] as const)('after %s, session-leave answers { rid } and every other member gets left', async (query, namespace, rid) => {
    const alice = await open('alice', 'Alice');
    const bob = await open('bob');
    await alice.iq(query, { rid }, namespace);
    await bob.iq(query, { rid }, namespace);
    await alice.nextAction('session-event', { event: 'joined' });

    const [answer, transaction] = await request(alice, 'session-leave', { rid }, namespace);
    expectIqResult(answer, alice, 'session-leave', { rid });
    expect(answer.jsongle.transaction).toBe(transaction);
    await expectMemberEvent(bob, 'left', namespace, rid, memberOf(alice, 'Alice'));
    await alice.expectNothing(isMemberEvent);

    // Gone: a second leave is refused.
    expectIqError(await alice.leave(rid), alice, 'session-leave', 404002);
    expectIqResult(await bob.leave(rid), bob, 'session-leave', { rid });
    await expect(server.server.registry.room(rid)).resolves.toBeUndefined();
  });

  test('session-leave of a room one is not in gets 404002 and tells no one', async () => {
    const alice = await open('alice');
    const bob = await open('bob');
    expectIqError(await alice.leave('nowhere'), alice, 'session-leave', 404002);
    await bob.join('not-mine');
    expectIqError(await alice.leave('not-mine'), alice, 'session-leave', 404002);
    await bob.mucJoin('#muc#not-mine');
    expectIqError(await alice.leave('#muc#not-mine'), alice, 'session-leave', 404002);
    await bob.expectNothing(isMemberEvent);
    await expect(server.server.registry.room('not-mine')).resolves.toMatchObject({ members: [memberOf(bob)] });
  });

  test('an unknown iq query gets iq-error 404001', async () => {
    const alice = await open('alice');
    const [answer, transaction] = await request(alice, 'room-destroy', { rid: 'x' }, 'room');
    expectIqError(answer, alice, 'room-destroy', 404001, transaction);
  });

  test('when a member disconnects, the others get left for each of its rooms, P2P and MUC', async () => {
    const alice = await open('alice', 'Alice');
    const bob = await open('bob');
    const carol = await open('carol');
    await alice.join('dc-p2p');
    await bob.join('dc-p2p');
    for (const client of [alice, bob, carol]) await client.mucJoin('#muc#dc');
    await expectMemberEvent(alice, 'joined', 'room', 'dc-p2p', memberOf(bob));
    await expectMemberEvent(alice, 'joined', 'muc', '#muc#dc', memberOf(bob));
    await expectMemberEvent(alice, 'joined', 'muc', '#muc#dc', memberOf(carol));
    await expectMemberEvent(bob, 'joined', 'muc', '#muc#dc', memberOf(carol));

    alice.close();
    await expectMemberEvent(bob, 'left', 'room', 'dc-p2p', memberOf(alice, 'Alice'));
    await expectMemberEvent(bob, 'left', 'muc', '#muc#dc', memberOf(alice, 'Alice'));
    await expectMemberEvent(carol, 'left', 'muc', '#muc#dc', memberOf(alice, 'Alice'));
    await carol.expectNothing(isMemberEvent);

    await expect(server.server.registry.room('dc-p2p')).resolves.toMatchObject({ members: [memberOf(bob)] });
    const muc = await server.server.registry.room('#muc#dc');
    expect(muc?.members.map((m) => m.sid)).toEqual([bob.sid, carol.sid]);
  });

  test.each([
    ['session-join', 'room', 'ghost-p2p'],
    ['muc-join', 'muc', '#muc#ghost'],
  ] as const)('a connection closing right after its %s leaves no ghost member behind', async (query, namespace, rid) => {
    const bob = await open('bob');
    await bob.iq(query, { rid }, namespace);
    const alice = await open('alice');
    const connections = (await server.server.registry.counts()).connections;

    // The join and the close leave together: the server may see the join first or not at all.
    alice.send(SERVER_ID, { action: 'iq-set', query, namespace, transaction: randomUUID(), description: { rid } });
    alice.close();
    await eventually(
      () => server.server.registry.counts(),
      (counts) => counts.connections === connections - 1,
      'connections after alice closed',
    );
    await expect(server.server.registry.room(rid)).resolves.toMatchObject({ members: [memberOf(bob)] });
    // The answer to a request of bob's comes after anything the server sent him before it.
    expectIqError(await bob.leave('barrier'), bob, 'session-leave', 404002);
    const events = bob.inbox.filter(isMemberEvent).map((m) => m.jsongle.event);
    // If bob was told alice joined, he was told she left.
    expect([[], ['joined', 'left']]).toContainEqual(events);
    if (events.length > 0) {
      await expectMemberEvent(bob, 'joined', namespace, rid, memberOf(alice));
      await expectMemberEvent(bob, 'left', namespace, rid, memberOf(alice));
    }
  });
});

describe('rooms disappear with their last member (PROTOCOL.md §4, §9)', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer(),
    (started) => (server = started),
    clients,
  );

  test('after everyone leaves or disconnects, the registry has no room and conferences_count is 0', async () => {
    const stats = async () => (await server.rest().get('/stats').expect(200)).body as Record<string, number>;
    const [alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map((uid) => connectAs(server.wsUrl, uid)));
    if (!alice || !bob || !carol) throw new Error('three clients expected');
    clients.push(alice, bob, carol);

    await alice.join('gone-p2p');
    await bob.join('gone-p2p');
    for (const client of [alice, bob, carol]) await client.mucJoin('#muc#gone');
    await carol.mucJoin('#muc#gone-too');
    await expect(server.server.registry.counts()).resolves.toEqual({ connections: 3, rooms: 3 });
    await expect(stats()).resolves.toMatchObject({ conferences_count: 3, conferences_total: 3 });

    await alice.leave('gone-p2p');
    await bob.leave('gone-p2p');
    await alice.leave('#muc#gone');
    // The rest go with their connections.
    bob.close();
    carol.close();
    await eventually(
      () => server.server.registry.counts(),
      (counts) => counts.rooms === 0,
      'rooms left in the registry',
    );
    await expect(server.server.registry.counts()).resolves.toEqual({ connections: 1, rooms: 0 });
    await expect(stats()).resolves.toMatchObject({ conferences_count: 0, conferences_total: 3, users_count: 1 });
  });
});
