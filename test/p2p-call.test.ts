import { connectAs, type TestClient } from './helpers/client';
import { startServer, withServer, type TestServer } from './helpers/server';

// Jest's asymmetric matchers are typed `any`; held as `unknown` they go in expected objects safely.
const A_UUID: unknown = expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
const AN_ISO_TIME: unknown = expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);

describe('a P2P call between two users', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  withServer(
    () => startServer(),
    (started) => (server = started),
    clients,
  );

  test('join, propose, relay with from = rid and to = recipient', async () => {
    const alice = await connectAs(server.wsUrl, 'alice', { dn: 'Alice' });
    const bob = await connectAs(server.wsUrl, 'bob');
    clients.push(alice, bob);

    const aliceJoin = await alice.join('room-1');
    expect(aliceJoin.jsongle).toMatchObject({ action: 'iq-result', query: 'session-join', description: { rid: 'room-1', members: [] } });
    const bobJoin = await bob.join('room-1');
    expect(bobJoin.jsongle.description).toMatchObject({ rid: 'room-1', members: [{ uid: 'alice', dn: 'Alice', sid: alice.sid }] });
    const joined = await alice.nextAction('session-event', { event: 'joined' });
    expect(joined).toMatchObject({
      from: 'jsongle-server',
      to: alice.sid,
      jsongle: { namespace: 'room', description: { rid: 'room-1', member: { uid: 'bob', sid: bob.sid } } },
    });

    const mid = alice.send('room-1', {
      action: 'session-propose',
      namespace: 'call',
      sid: 'call-1',
      initiator: 'alice',
      responder: 'bob',
      description: { media: ['audio', 'video'] },
    });
    const proposed = await bob.nextAction('session-propose');
    // Exactly what alice sent, but from the room, to bob, with the server's times (§5).
    expect(proposed).toEqual({
      id: mid,
      from: 'room-1',
      to: bob.sid,
      jsongle: {
        action: 'session-propose',
        namespace: 'call',
        sid: 'call-1',
        initiator: 'alice',
        responder: 'bob',
        description: { media: ['audio', 'video'], sent: AN_ISO_TIME, relayed: AN_ISO_TIME },
      },
    });
    // §5 rule 4: the server tells the caller it is trying, from itself, with the call's identifiers.
    const trying = await alice.nextAction('session-info', { reason: 'trying' });
    expect(trying).toEqual({
      id: A_UUID,
      from: 'jsongle-server',
      to: alice.sid,
      jsongle: {
        action: 'session-info',
        namespace: 'call',
        sid: 'call-1',
        initiator: 'alice',
        responder: 'bob',
        reason: 'trying',
        description: { tried: AN_ISO_TIME },
      },
    });
    // The callee gets no trying, the caller no echo of its propose.
    await Promise.all([
      bob.expectNothing((m) => m.jsongle.reason === 'trying'),
      alice.expectNothing((m) => m.jsongle.action === 'session-propose'),
    ]);

    await expect(
      server
        .rest()
        .get('/stats')
        .then((r) => r.body as Record<string, number>),
    ).resolves.toMatchObject({ users_count: 2, conferences_count: 1 });
  });
});
