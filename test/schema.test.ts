import { readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import type { Envelope } from '../src/protocol/envelope';
import { connect, connectAs, type TestClient } from './helpers/client';
import { PROJECT_ROOT, startServer, type TestServer } from './helpers/server';

/** The published contract (issue #9): GET /schema, docs/schema.json, and what really travels. */

describe('GET /schema', () => {
  let server: TestServer;
  let schema: { definitions: Record<string, object> };
  const sentByServer: Envelope[] = [];
  const sentByClients: unknown[] = [];

  /** A client whose every envelope, both ways, is kept for the schema to judge. */
  const recorded = (client: TestClient) => {
    client.socket.on('jsongle', (message: Envelope) => sentByServer.push(message));
    const emit = client.emit.bind(client);
    client.emit = (raw: unknown) => {
      sentByClients.push(raw);
      emit(raw);
    };
    return client;
  };

  beforeAll(async () => {
    server = await startServer({ turnSecret: 'secret', turnUris: 'turn:127.0.0.1:3478' });
    schema = (await server.rest().get('/schema').expect(200).expect('content-type', /json/)).body as typeof schema;
  });
  afterAll(async () => {
    await server.close();
  });

  test('is the checked-in docs/schema.json (regenerate with npm run schema)', () => {
    expect(schema).toEqual(JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'docs', 'schema.json'), 'utf8')));
  });

  test('accepts every kind of message the server sends and the clients send in a session', async () => {
    const stranger = recorded(await connect(server.wsUrl));
    await expect(stranger.hello('')).resolves.toMatchObject({ jsongle: { status: 'failed' } });
    await stranger.nextAction('session-error');
    const alice = recorded(await connect(server.wsUrl));
    await alice.hello('alice', 'Alice');
    const bob = recorded(await connect(server.wsUrl));
    await bob.hello('bob');
    const carol = recorded(await connectAs(server.wsUrl, 'carol'));

    alice.send('lonely', { action: 'session-propose', sid: 'c0' });
    await alice.nextAction('session-error');
    await alice.join('lonely');
    alice.send('lonely', { action: 'session-propose', sid: 'c0' });
    await alice.nextAction('session-info', { reason: 'unreachable' });
    await alice.join('p2p');
    await bob.join('p2p');
    await alice.nextAction('session-event', { event: 'joined' });
    alice.send('p2p', { action: 'session-propose', namespace: 'call', sid: 'c1', initiator: 'alice', responder: 'bob' });
    await bob.nextAction('session-propose');
    await alice.nextAction('session-info', { reason: 'trying' });
    bob.send('p2p', { action: 'session-text', namespace: 'message', description: { body: 'hello' } });
    await alice.nextAction('session-text');
    await bob.nextAction('session-event', { event: 'ack' });
    await alice.iq('no-such-query', {});
    await alice.iq('turn-credentials', {});
    for (const client of [alice, bob, carol]) await client.mucJoin('#muc#s');
    carol.send('#muc#s', { action: 'session-text', namespace: 'muc', description: { body: 'all' } });
    await alice.nextAction('session-text');
    await bob.leave('p2p');
    await alice.nextAction('session-event', { event: 'left' });
    await server.server.closeSignaling();
    await alice.nextAction('session-event', { event: 'shutdown' });

    const ajv = new Ajv({ allErrors: true, strict: false });
    ajv.addSchema(schema, 'jsongle');
    const serverEnvelope = ajv.getSchema('jsongle#/definitions/ServerEnvelope');
    const clientEnvelope = ajv.getSchema('jsongle#/definitions/ClientEnvelope');
    const kinds = new Set(
      sentByServer.map((m) => `${m.jsongle.action}/${m.jsongle.query ?? m.jsongle.event ?? m.jsongle.reason ?? m.jsongle.status ?? ''}`),
    );
    expect(kinds.size).toBeGreaterThanOrEqual(15);
    for (const message of sentByServer) expect([serverEnvelope?.(message), message]).toEqual([true, message]);
    expect(sentByClients.length).toBeGreaterThanOrEqual(15);
    for (const message of sentByClients) expect([clientEnvelope?.(message), message]).toEqual([true, message]);
  });

  test('rejects the malformed corpus the server refuses', () => {
    const ajv = new Ajv({ strict: false });
    ajv.addSchema(schema, 'jsongle');
    const clientEnvelope = ajv.getSchema('jsongle#/definitions/ClientEnvelope');
    const jsongle = { action: 'session-text' };
    const corpus: unknown[] = [
      'text',
      42,
      null,
      [],
      {},
      { id: 'm', to: 'r' },
      { id: 'm', to: 'r', jsongle: 'x' },
      { id: 'm', to: 'r', jsongle: {} },
      { id: 'm', to: 'r', jsongle: { action: 7 } },
      { to: 'r', jsongle },
      { id: '', to: 'r', jsongle },
      { id: 'x'.repeat(129), to: 'r', jsongle },
      { id: 5, to: 'r', jsongle },
      { id: 'm', jsongle },
      { id: 'm', to: 'r', from: 5, jsongle },
      { id: 'm', to: 'r', jsongle: { ...jsongle, description: [] } },
      { id: 'm', to: 'r', jsongle: { ...jsongle, description: 'sdp' } },
      { id: 'm', to: 'r', jsongle: { ...jsongle, transaction: {} } },
      { id: 'm', to: 'r', jsongle: { ...jsongle, query: 'q'.repeat(65) } },
    ];
    for (const message of corpus) expect([clientEnvelope?.(message), message]).toEqual([false, message]);
  });
});
