import { randomUUID } from 'node:crypto';
import type { Envelope } from '../src/protocol/envelope';
import { connect, connectAs, type TestClient } from './helpers/client';
import { startServer, type TestServer } from './helpers/server';

/**
 * Whole conversations as a JSONgle client library drives them: a two-user call from hello to
 * leave, and a three-user MUC chat, each checked message by message and then in /stats (§9).
 */

const SERVER_ID = 'jsongle-server';
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// Jest's asymmetric matchers are typed `any`; held as `unknown` they go in expected objects safely.
const A_UUID: unknown = expect.stringMatching(UUID);
const AN_ISO_TIME: unknown = expect.stringMatching(ISO_TIME);

type Jsongle = Record<string, unknown> & { action: string; description?: Record<string, unknown> };

/** A browser-like SDP: one audio and one video section with the usual codecs, candidates and extensions. */
function sdp(type: 'offer' | 'answer', sessionId: string): string {
  const lines = [
    'v=0',
    `o=- ${sessionId} 2 IN IP4 127.0.0.1`,
    's=-',
    't=0 0',
    'a=group:BUNDLE 0 1',
    'a=extmap-allow-mixed',
    'a=msid-semantic: WMS stream',
  ];
  const media = (kind: 'audio' | 'video', mid: number, payloads: number[], codec: (pt: number) => string[]) => {
    lines.push(
      `m=${kind} 9 UDP/TLS/RTP/SAVPF ${payloads.join(' ')}`,
      'c=IN IP4 0.0.0.0',
      'a=rtcp:9 IN IP4 0.0.0.0',
      `a=ice-ufrag:${sessionId.slice(0, 4)}`,
      `a=ice-pwd:${sessionId.padEnd(24, 'x')}`,
      'a=ice-options:trickle',
      'a=fingerprint:sha-256 4F:2A:91:0C:7B:55:E3:18:6D:A0:3B:C9:12:F4:88:5E:01:D7:9A:2C:63:BE:47:11:90:FA:3D:06:C8:72:5B:E4',
      `a=setup:${type === 'offer' ? 'actpass' : 'active'}`,
      `a=mid:${mid}`,
      'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level',
      'a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
      'a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
      'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
      'a=sendrecv',
      `a=msid:stream ${kind}-track`,
      'a=rtcp-mux',
      'a=rtcp-rsize',
    );
    for (const pt of payloads) lines.push(...codec(pt));
    lines.push(`a=ssrc:${1000 + mid} cname:jsongle-${kind}`, `a=ssrc:${1000 + mid} msid:stream ${kind}-track`);
  };
  media('audio', 0, [111, 63, 9, 0, 8, 13, 110, 126], (pt) => [
    `a=rtpmap:${pt} ${pt === 111 ? 'opus/48000/2' : `PCMU/8000`}`,
    `a=rtcp-fb:${pt} transport-cc`,
    `a=fmtp:${pt} minptime=10;useinbandfec=1`,
  ]);
  media('video', 1, [96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 35, 36, 37, 38], (pt) => [
    `a=rtpmap:${pt} ${pt % 2 === 0 ? 'VP8' : 'rtx'}/90000`,
    `a=rtcp-fb:${pt} goog-remb`,
    `a=rtcp-fb:${pt} transport-cc`,
    `a=rtcp-fb:${pt} ccm fir`,
    `a=rtcp-fb:${pt} nack`,
    `a=rtcp-fb:${pt} nack pli`,
    `a=fmtp:${pt} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f;apt=${pt - 1}`,
  ]);
  return `${lines.join('\r\n')}\r\n`;
}

/**
 * Sends `jsongle` from `sender` to room `rid` and checks that `recipient` gets it intact: the same
 * id and fields, `from` = `from`, `to` = its own sid, and the two times of §5 in the description.
 */
async function relayIntact(sender: TestClient, recipient: TestClient, rid: string, from: string, jsongle: Jsongle): Promise<string> {
  const mid = sender.send(rid, jsongle);
  const received = await recipient.next((m) => m.id === mid, undefined, `${jsongle.action} ${mid}`);
  expect(received).toEqual({
    id: mid,
    from,
    to: recipient.sid,
    jsongle: { ...jsongle, description: { ...jsongle.description, sent: AN_ISO_TIME, relayed: AN_ISO_TIME } },
  });
  return mid;
}

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

const stats = async (server: TestServer) => (await server.rest().get('/stats').expect(200)).body as Record<string, number>;

describe('a scripted two-user call', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await server.close();
  });

  test('hello, join, propose, proceed, initiate, accept, candidates, terminate, leave', async () => {
    const rid = 'scripted-call';
    const call = { namespace: 'call', sid: randomUUID(), initiator: 'alice', responder: 'bob' };

    // hello
    const alice = await connect(server.wsUrl);
    const bob = await connect(server.wsUrl);
    clients.push(alice, bob);
    for (const [client, uid, dn] of [
      [alice, 'alice', 'Alice'],
      [bob, 'bob', 'Bob'],
    ] as const) {
      const ack: Envelope = await client.hello(uid, dn);
      expect(ack).toEqual({
        id: A_UUID,
        from: SERVER_ID,
        to: client.sid,
        jsongle: {
          action: 'ack',
          status: 'success',
          transaction: A_UUID,
          description: { resume: expect.any(String) as unknown, reconnectGraceMs: 0 },
        },
      });
    }

    // join
    expect((await alice.join(rid)).jsongle.description).toEqual({ rid, members: [], joined: AN_ISO_TIME });
    expect((await bob.join(rid)).jsongle.description).toEqual({
      rid,
      members: [{ uid: 'alice', dn: 'Alice', sid: alice.sid }],
      joined: AN_ISO_TIME,
    });
    expect((await alice.nextAction('session-event', { event: 'joined' })).jsongle).toEqual({
      action: 'session-event',
      namespace: 'room',
      event: 'joined',
      description: { rid, member: { uid: 'bob', dn: 'Bob', sid: bob.sid } },
    });

    // propose → trying
    await relayIntact(alice, bob, rid, rid, { action: 'session-propose', ...call, description: { media: ['audio', 'video'] } });
    expect(await alice.nextAction('session-info', { reason: 'trying' })).toEqual({
      id: A_UUID,
      from: SERVER_ID,
      to: alice.sid,
      jsongle: { action: 'session-info', ...call, reason: 'trying', description: { tried: AN_ISO_TIME } },
    });

    // proceed, initiate, accept
    await relayIntact(bob, alice, rid, rid, { action: 'session-proceed', ...call });
    const offer = sdp('offer', '4611731400430051336');
    const answer = sdp('answer', '8839201772346610021');
    expect(offer.length).toBeGreaterThan(5000);
    expect(offer.length).toBeLessThan(10000);
    await relayIntact(alice, bob, rid, rid, { action: 'session-initiate', ...call, description: { type: 'offer', sdp: offer } });
    await relayIntact(bob, alice, rid, rid, { action: 'session-accept', ...call, description: { type: 'answer', sdp: answer } });

    // 10 candidates each way, sent together, each side receiving its peer's in order
    const candidate = (who: string, n: number) => ({
      action: 'transport-info',
      ...call,
      description: {
        candidate: `candidate:${n} 1 udp ${2122260223 - n} 192.0.2.${n + 1} ${49152 + n} typ host generation 0 ufrag ${who}`,
        sdpMid: String(n % 2),
        sdpMLineIndex: n % 2,
      },
    });
    const sent = { alice: [] as string[], bob: [] as string[] };
    for (let n = 0; n < 10; n++) {
      sent.alice.push(alice.send(rid, candidate('alice', n)));
      sent.bob.push(bob.send(rid, candidate('bob', n)));
    }
    for (const [recipient, sender, ids] of [
      [bob, 'alice', sent.alice],
      [alice, 'bob', sent.bob],
    ] as const) {
      for (let n = 0; n < 10; n++) {
        const received = await recipient.nextAction('transport-info');
        expect(received).toEqual({
          id: ids[n],
          from: rid,
          to: recipient.sid,
          jsongle: {
            ...candidate(sender, n),
            description: { ...candidate(sender, n).description, sent: AN_ISO_TIME, relayed: AN_ISO_TIME },
          },
        });
      }
    }

    // terminate, leave
    await relayIntact(alice, bob, rid, rid, { action: 'session-terminate', ...call, reason: 'success' });
    expect((await alice.leave(rid)).jsongle).toMatchObject({ action: 'iq-result', query: 'session-leave', description: { rid } });
    expect((await bob.nextAction('session-event', { event: 'left' })).jsongle).toEqual({
      action: 'session-event',
      namespace: 'room',
      event: 'left',
      description: { rid, member: { uid: 'alice', dn: 'Alice', sid: alice.sid } },
    });
    expect((await bob.leave(rid)).jsongle).toMatchObject({ action: 'iq-result', query: 'session-leave', description: { rid } });
    // Nothing left over on either side: every message was taken above.
    await Promise.all([alice.expectNothing(), bob.expectNothing()]);

    const after = await stats(server);
    expect(after).toMatchObject({ users_count: 2, users_total: 2, conferences_count: 0, conferences_total: 1 });
    // Each SDP was received once and sent once, so both totals are at least their size (in MB).
    const sdpMegabytes = (offer.length + answer.length) / 1e6;
    expect(after.recv_total).toBeGreaterThan(sdpMegabytes);
    expect(after.sent_total).toBeGreaterThan(sdpMegabytes);
    expect(after.recv_total).toBeLessThan(0.1);
    expect(after.sent_total).toBeLessThan(0.1);
  });
});

describe('a scripted three-user MUC chat', () => {
  let server: TestServer;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    for (const client of clients) client.close();
    await server.close();
  });

  test('#muc#chat: each says something, the two others hear it from #muc#chat/<uid>, receipts come back', async () => {
    const rid = '#muc#chat';
    const uids = ['alice', 'bob', 'carol'];
    const members = await Promise.all(uids.map((uid) => connectAs(server.wsUrl, uid)));
    clients.push(...members);
    for (const member of members) await member.mucJoin(rid);
    expect(await server.server.registry.room(rid)).toMatchObject({
      kind: 'muc',
      members: members.map((m) => ({ uid: m.uid, sid: m.sid })),
    });

    const said = members.map((member) => ({ member, text: `hello from ${member.uid}`, mid: '' }));
    for (const line of said)
      line.mid = line.member.send(rid, { action: 'session-text', namespace: 'muc', description: { body: line.text } });

    for (const { member, text, mid } of said) {
      for (const other of members.filter((m) => m !== member)) {
        expect(await other.next((m) => m.id === mid, undefined, `text of ${member.uid}`)).toEqual({
          id: mid,
          from: `${rid}/${member.uid}`,
          to: other.sid,
          jsongle: { action: 'session-text', namespace: 'muc', description: { body: text, sent: AN_ISO_TIME, relayed: AN_ISO_TIME } },
        });
      }
      expect(await member.nextAction('session-event', { event: 'ack' })).toEqual({
        id: A_UUID,
        from: SERVER_ID,
        to: member.sid,
        jsongle: {
          action: 'session-event',
          namespace: 'muc',
          event: 'ack',
          description: { mid, type: 'server-received', acknowledged: AN_ISO_TIME },
        },
      });
    }
    // Beyond the joined events of the start, nothing else came.
    for (const member of members) {
      expect(member.inbox.every((m) => m.jsongle.action === 'session-event' && m.jsongle.event === 'joined')).toBe(true);
    }
    await expect(stats(server)).resolves.toMatchObject({ users_count: 3, conferences_count: 1, conferences_total: 1 });

    for (const member of members) member.close();
    await eventually(
      () => server.server.registry.counts(),
      (counts) => counts.connections === 0 && counts.rooms === 0,
      'registry after every client closed',
    );
    await expect(server.server.registry.counts()).resolves.toEqual({ connections: 0, rooms: 0 });
    await expect(stats(server)).resolves.toMatchObject({ users_count: 0, users_total: 3, conferences_count: 0, conferences_total: 1 });
  });
});
