import { connectAs, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';

/** GET /rooms and GET /rooms/:rid, the admin view (issue #9). Cross-process: registry contract. */
describe('the admin view', () => {
  let server: TestServer;
  const clients: TestClient[] = [];
  const bearer = { Authorization: 'Bearer admin-secret' };

  beforeAll(async () => {
    server = await startServer({ adminToken: 'admin-secret' });
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await server.close();
  });

  test('needs the admin token', async () => {
    const refused = await server.rest().get('/rooms').expect(401);
    expect(refused.body).toMatchObject({ errorCode: 401002 });
    await server.rest().get('/rooms/x').set({ Authorization: 'Bearer wrong' }).expect(401);
  });

  test('lists rooms with kind, members (uid, dn, since) and relayed messages', async () => {
    const alice = await connectAs(server.wsUrl, 'alice', { dn: 'Alice' });
    const bob = await connectAs(server.wsUrl, 'bob');
    clients.push(alice, bob);
    await alice.join('call');
    await bob.join('call');
    await alice.mucJoin('#muc#team');
    for (let i = 0; i < 3; i++) bob.send('call', { action: 'session-text', description: { body: `m${i}` } });
    for (let i = 0; i < 3; i++) await bob.nextAction('session-event', { event: 'ack' });

    const listing = await server.rest().get('/rooms').set(bearer).expect(200);
    expect(listing.body).toEqual({
      rooms: [
        {
          rid: '#muc#team',
          kind: 'muc',
          created: expect.any(String) as unknown,
          messages: 0,
          members: [{ uid: 'alice', dn: 'Alice', sid: alice.sid, since: expect.any(String) as unknown }],
        },
        {
          rid: 'call',
          kind: 'p2p',
          created: expect.any(String) as unknown,
          messages: 3,
          members: [
            { uid: 'alice', dn: 'Alice', sid: alice.sid, since: expect.any(String) as unknown },
            { uid: 'bob', sid: bob.sid, since: expect.any(String) as unknown },
          ],
        },
      ],
    });
    const one = await server
      .rest()
      .get(`/rooms/${encodeURIComponent('#muc#team')}`)
      .set(bearer)
      .expect(200);
    expect(one.body).toMatchObject({ rid: '#muc#team', kind: 'muc' });
    const missing = await server.rest().get('/rooms/nowhere').set(bearer).expect(404);
    expect(missing.body).toMatchObject({ errorCode: 404002 });
  });
});
