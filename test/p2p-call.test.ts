import { connectAs, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';

describe('a P2P call between two users', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    server = await startServer();
  });
  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
  });
  afterAll(async () => {
    await server.close();
  });

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
    expect(proposed).toMatchObject({
      id: mid,
      from: 'room-1',
      to: bob.sid,
      jsongle: { sid: 'call-1', description: { media: ['audio', 'video'] } },
    });
    expect(typeof proposed.jsongle.description?.relayed).toBe('string');
    const trying = await alice.nextAction('session-info', { reason: 'trying' });
    expect(trying.jsongle).toMatchObject({ sid: 'call-1', initiator: 'alice', responder: 'bob' });

    await expect(
      server
        .rest()
        .get('/stats')
        .then((r) => r.body as Record<string, number>),
    ).resolves.toMatchObject({ users_count: 2, conferences_count: 1 });
  });
});
