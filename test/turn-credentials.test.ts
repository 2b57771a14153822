import { iceServersFor } from '../src/signaling/handlers/turn-credentials';
import { connect, connectAs, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';

/** TURN credentials in coturn's REST-API scheme (issue #9). */

describe('the credentials themselves', () => {
  // Vectors computed independently with OpenSSL:
  //   printf '1700000000:alice' | openssl dgst -sha1 -hmac north-pole-secret -binary | base64
  test('match OpenSSL for known inputs', () => {
    const config = { turnSecret: 'north-pole-secret', turnUris: ['turn:127.0.0.1:3478'], turnTtlSeconds: 3600 };
    expect(iceServersFor(config, 'alice', (1700000000 - 3600) * 1000)).toEqual({
      iceServers: [{ urls: ['turn:127.0.0.1:3478'], username: '1700000000:alice', credential: 'BlMD9egkgN94t6m66y4XRc99g2I=' }],
      expires: '2023-11-14T22:13:20.000Z',
    });
  });

  test('are not given without a secret', () => {
    expect(iceServersFor({ turnSecret: '', turnUris: [], turnTtlSeconds: 60 }, 'alice')).toBeUndefined();
  });
});

describe('over the protocol', () => {
  let server: TestServer;
  const clients: TestClient[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await server.close();
  });

  test('the hello ack carries iceServers valid for turnTtlSeconds, and turn-credentials renews them', async () => {
    server = await startServer({
      turnSecret: 's3cr3t',
      turnUris: 'turn:127.0.0.1:3478?transport=udp,turns:127.0.0.1:5349',
      turnTtlSeconds: '600',
    });
    const before = Math.floor(Date.now() / 1000);
    const alice = await connectAs(server.wsUrl, 'alice');
    clients.push(alice);
    // connectAs took the ack; ask again to read the fields.
    const answer = await alice.iq('turn-credentials', {});
    expect(answer.jsongle).toMatchObject({ action: 'iq-result', query: 'turn-credentials' });
    const { iceServers, expires } = answer.jsongle.description as {
      iceServers: { urls: string[]; username: string; credential: string }[];
      expires: string;
    };
    expect(iceServers).toHaveLength(1);
    const [expiry, uid] = String(iceServers[0]?.username).split(':');
    expect(uid).toBe('alice');
    expect(Number(expiry) - before).toBeGreaterThanOrEqual(600);
    expect(Number(expiry) - before).toBeLessThanOrEqual(602);
    expect(iceServers[0]?.urls).toEqual(['turn:127.0.0.1:3478?transport=udp', 'turns:127.0.0.1:5349']);
    expect(new Date(expires).getTime()).toBe(Number(expiry) * 1000);
    const expected = iceServersFor(server.config, 'alice', (Number(expiry) - 600) * 1000) as { iceServers: unknown[] };
    expect(iceServers[0]).toEqual(expected.iceServers[0]);
  });

  test('the ack of the hello itself carries them', async () => {
    server = await startServer({ turnSecret: 's3cr3t', turnUris: 'turn:127.0.0.1:3478' });
    const bob = await connect(server.wsUrl);
    clients.push(bob);
    const ack = await bob.hello('bob');
    expect(ack.jsongle).toMatchObject({ status: 'success', description: { iceServers: [{ urls: ['turn:127.0.0.1:3478'] }] } });
  });

  test('without turnSecret, the hello carries no iceServers and turn-credentials is refused with 405001', async () => {
    server = await startServer();
    const carol = await connect(server.wsUrl);
    clients.push(carol);
    const ack = await carol.hello('carol');
    expect(ack.jsongle.description).not.toHaveProperty('iceServers');
    const answer = await carol.iq('turn-credentials', {});
    expect(answer.jsongle).toMatchObject({ action: 'iq-error', query: 'turn-credentials', description: { errorCode: 405001 } });
  });
});
