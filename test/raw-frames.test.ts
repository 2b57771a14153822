import { randomUUID } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import request from 'supertest';
import WebSocket from 'ws';
import type { Envelope } from '../src/protocol/envelope';
import { connectAs, type TestClient } from './helpers/client';
import { spawnServer, type ServerProcess } from './helpers/process';

/**
 * Issue #5, PROTOCOL.md §6: hostile input below Socket.IO. Every row sends raw frames with a plain
 * WebSocket client (or raw bytes over TLS for the HTTP rows) to the real server process, asserts
 * what the server answers (an error reply, silence, a clean close, or for any binary packet the
 * refusal that closes the connection), and then proves that the process is still up: a fresh
 * normal client completes a hello and a join, GET /ping answers, no uncaught exception or
 * unhandled rejection was logged, and no connection or room is left behind.
 *
 * Any input that ever crashed the server stays in these tables as a regression row (`regression`
 * says what it did): never delete such a row, even once it passes.
 */

const SERVER_ID = 'jsongle-server';
const OUTCOME_TIMEOUT_MS = 5000;
/** What the server prints when something escaped every handler (see src/index.ts). */
const PROCESS_FAILURE = /uncaught exception|unhandled promise rejection/i;

// ---------------------------------------------------------------------------------------------
// A raw Engine.IO / Socket.IO client over `ws`
// ---------------------------------------------------------------------------------------------

type Frame = string | Buffer | { text: Buffer };
type Received = { text: string } | { binary: Buffer };

/** Where a row starts: after the Engine.IO open, after the Socket.IO CONNECT, after the hello, or in a P2P room with a peer. */
type Stage = 'engine' | 'connected' | 'hello' | 'room';

class RawConnection {
  readonly inbox: Received[] = [];
  closeEvent: { code: number; reason: string } | undefined;
  /** Session identity and hello transaction, once the server sent its session-hello. */
  sid = '';
  helloTransaction = '';
  private readonly listeners = new Set<() => void>();

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const frame: Received = isBinary ? { binary: data } : { text: data.toString('utf8') };
      // Engine.IO heartbeat: answered here so that no row is cut by a ping timeout.
      if ('text' in frame && frame.text === '2') {
        ws.send('3');
        return;
      }
      this.inbox.push(frame);
      this.changed();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closeEvent = { code, reason: reason.toString() };
      this.changed();
    });
    // A reset shows as a close with code 1006; the error itself is not the test's concern.
    ws.on('error', () => undefined);
  }

  static async open(wsUrl: string): Promise<RawConnection> {
    const url = `${wsUrl.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`;
    const connection = new RawConnection(new WebSocket(url, { rejectUnauthorized: false }));
    await connection.take((frame) => 'text' in frame && frame.text.startsWith('0{'), 'the Engine.IO open packet');
    return connection;
  }

  private changed(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** Resolves once `done()` holds (checked on every frame and on close), or rejects after `timeoutMs`. */
  until<T>(done: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const value = done();
        if (value === undefined) return;
        finish();
        resolve(value);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no ${what} within ${timeoutMs} ms; received: ${this.inbox.map(render).join(' | ')}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Takes the first received frame that matches; fails if the connection closes first. */
  async take(match: (frame: Received) => boolean, what: string): Promise<Received> {
    const index = await this.until(
      () => {
        const found = this.inbox.findIndex(match);
        if (found >= 0) return found;
        if (this.closeEvent) throw new Error(`closed (${this.closeEvent.code}) while waiting for ${what}`);
        return undefined;
      },
      OUTCOME_TIMEOUT_MS,
      what,
    );
    return this.inbox.splice(index, 1)[0] as Received;
  }

  async takeEnvelope(match: (message: Envelope) => boolean, what: string): Promise<Envelope> {
    const frame = await this.take((f) => {
      const message = envelopeOf(f);
      return message !== undefined && match(message);
    }, what);
    return envelopeOf(frame) as Envelope;
  }

  send(frame: Frame): void {
    if (typeof frame === 'string' || Buffer.isBuffer(frame)) this.ws.send(frame);
    // A text frame carrying whatever bytes it is given: how invalid UTF-8 reaches the server.
    else this.ws.send(frame.text, { binary: false });
  }

  sendEnvelope(envelope: unknown): void {
    this.send(`42${JSON.stringify(['jsongle', envelope])}`);
  }

  close(): void {
    this.ws.terminate();
  }
}

/** The `jsongle` envelope a frame carries, if it is a Socket.IO EVENT of that name. */
function envelopeOf(frame: Received): Envelope | undefined {
  if (!('text' in frame) || !frame.text.startsWith('42["jsongle",')) return undefined;
  return (JSON.parse(frame.text.slice(2)) as [string, Envelope])[1];
}

/**
 * The refusals whose details the table tells apart: a binary attachment (400002, then the server
 * closes the connection) from any other non-envelope (400002), and too deep a nesting (400001)
 * from any other bad parameter (400001).
 */
function refusalKind(details: unknown): string {
  if (typeof details !== 'string') return '';
  if (/binary attachments/i.test(details)) return ' binary';
  if (/nest deeper than 32 levels/i.test(details)) return ' nesting';
  return '';
}

/** A short, stable description of a received frame, for the table's expectations. */
function render(frame: Received): string {
  if ('binary' in frame) return `<binary ${frame.binary.length} bytes>`;
  const message = envelopeOf(frame);
  if (!message) return frame.text.startsWith('40{"sid"') ? '40' : frame.text.slice(0, 80);
  const { action, query, status, event, description } = message.jsongle;
  if (action === 'session-error') return `session-error ${String(description?.errorCode)}${refusalKind(description?.errorDetails)}`;
  if (action === 'iq-error') return `iq-error ${String(query)} ${String(description?.errorCode)}`;
  // A successful hello's ack carries the session's resume token and the reconnect grace (issue #9).
  if (action === 'ack') return `ack ${String(status)}${description ? ` {${Object.keys(description).sort().join(',')}}` : ''}`;
  if (action.startsWith('iq-')) return `${action} ${String(query)}`;
  if (action === 'session-event') return `session-event ${String(event)}`;
  return action;
}

// ---------------------------------------------------------------------------------------------
// The table of raw frames
// ---------------------------------------------------------------------------------------------

interface RowContext {
  /** The transaction of the server's session-hello to this connection. */
  helloTransaction: string;
  /** The P2P room the connection is in (stage `room`). */
  rid: string;
}

interface FrameRow {
  name: string;
  /** Default `hello`. */
  stage?: Stage;
  frames: Frame[] | ((context: RowContext) => Frame[]);
  /** What the connection receives before the probe's answer (or before it is closed). */
  replies: string[];
  /**
   * `alive`: the probe sent after the row is answered; `close`: the server closed the connection
   * cleanly first; `refused`: a binary attachment, refused (PROTOCOL.md §6) with `replies` (the
   * one 400002 among them), then the server's own disconnect: a Socket.IO DISCONNECT `41` (see
   * `parserCloses`) and a clean WebSocket close; the probe, sent after the binary packet, is dropped.
   */
  end: 'alive' | 'close' | 'refused';
  /**
   * End `refused`: Socket.IO's parser refuses the input too (a malformed or unfinished packet, or
   * a frame it did not expect) and closes the transport itself, which may come before the server's
   * DISCONNECT `41`. Without it, the binary packet is well-formed, and the `41` must come.
   */
  parserCloses?: true;
  /** The WebSocket close code, when it matters. */
  wsCode?: number;
  /**
   * Stage `room`: the actions the peer receives from this connection (default none); with end
   * `alive` up to a marker sent after the row, else up to its `left` (which must come).
   */
  peerGets?: string[];
  /** What this input once did to the server: the row is a regression test and stays. */
  regression?: string;
}

const event = (...args: unknown[]) => `42${JSON.stringify(args)}`;
const placeholder = (num: unknown) => ({ _placeholder: true, num });
/** An envelope the server refuses with 405001 once the hello is done: unknown action, nothing else wrong. */
const unknownAction = () => ({ id: randomUUID(), from: null, to: SERVER_ID, jsongle: { action: 'no-such-action' } });
const text = (rid: string, description: unknown) => ({
  id: randomUUID(),
  from: null,
  to: rid,
  jsongle: { action: 'session-text', namespace: 'message', description },
});
/** `[[[…]]]` `depth` levels deep, as JSON text (JSON.stringify itself cannot go that deep). */
const deepArray = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
const INVALID_UTF8 = Buffer.from([0xff, 0xfe, 0xfd, 0xc3, 0x28, 0xa0, 0xa1]);
/** §6: the one answer to a binary packet, whose errorDetails speak of binary attachments (then the server closes the connection). */
const REFUSED_BINARY = ['session-error 400002 binary'];

/**
 * One row per input. Any input that ever crashed the server (or hung or leaked a connection) stays
 * here as a regression row with `regression` saying what it did: never delete such a row.
 */
const FRAME_ROWS: FrameRow[] = [
  // --- before the Socket.IO CONNECT -------------------------------------------------------
  { name: 'CONNECT with a string as auth payload', stage: 'engine', frames: ['40"token"'], replies: [], end: 'close' },
  { name: 'CONNECT with an array as auth payload', stage: 'engine', frames: ['40[]'], replies: [], end: 'close' },
  {
    name: 'CONNECT to a namespace that does not exist',
    stage: 'engine',
    frames: ['40/admin,{}'],
    replies: ['44/admin,{"message":"Invalid namespace"}'],
    end: 'alive',
  },
  {
    name: 'CONNECT whose appToken is an object with a toString trap (taken as no token)',
    stage: 'engine',
    frames: ['40{"appToken":{"toString":1,"valueOf":1}}'],
    replies: [],
    end: 'alive',
  },
  { name: 'an EVENT before any CONNECT', stage: 'engine', frames: [event('jsongle', unknownAction())], replies: [], end: 'close' },

  // --- Engine.IO packets ----------------------------------------------------------------------
  { name: 'an empty text frame', frames: [''], replies: [], end: 'close' },
  { name: 'an unknown Engine.IO packet type (9)', frames: ['9'], replies: [], end: 'close' },
  { name: 'a letter as Engine.IO packet type', frames: ['x{"a":1}'], replies: [], end: 'close' },
  { name: 'an Engine.IO ping from the client (EIO 4 pings go the other way)', frames: ['2'], replies: [], end: 'close' },
  { name: 'an Engine.IO pong nobody asked for', frames: ['3'], replies: [], end: 'alive' },
  { name: 'an Engine.IO close packet over websocket (ignored)', frames: ['1'], replies: [], end: 'alive' },
  { name: 'an Engine.IO upgrade packet on an open websocket', frames: ['5'], replies: [], end: 'alive' },
  { name: 'an Engine.IO noop', frames: ['6'], replies: [], end: 'alive' },
  {
    name: 'a base64 binary message where binary frames are used',
    frames: ['bAQIDBA=='],
    replies: REFUSED_BINARY,
    end: 'refused',
    parserCloses: true,
  },
  {
    name: 'a binary frame with no attachment pending',
    frames: [Buffer.from([4, 2, 1])],
    replies: REFUSED_BINARY,
    end: 'refused',
    parserCloses: true,
  },
  {
    name: 'a text frame with invalid UTF-8',
    frames: [{ text: Buffer.concat([Buffer.from('42["jsongle",'), INVALID_UTF8, Buffer.from(']')]) }],
    replies: [],
    end: 'close',
    wsCode: 1007,
  },
  {
    name: 'an Engine.IO message over maxHttpBufferSize (2 MB)',
    frames: [event('jsongle', { pad: 'x'.repeat(2_000_000) })],
    replies: [],
    end: 'close',
    wsCode: 1009,
  },

  // --- Socket.IO packets: types, truncation, namespaces ------------------------------------------
  // An Engine.IO message with no data at all: not binary, so not the binary refusal (whose details
  // would say so); Socket.IO's parser closes the connection without a word, as for `40` below.
  { name: 'an empty Socket.IO packet', frames: ['4'], replies: [], end: 'close' },
  { name: 'a second CONNECT on the default namespace', frames: ['40'], replies: [], end: 'close' },
  { name: 'a second CONNECT with an auth payload', frames: ['40{"appToken":""}'], replies: [], end: 'close' },
  {
    name: 'CONNECT to an unknown namespace after the hello',
    frames: ['40/admin,'],
    replies: ['44/admin,{"message":"Invalid namespace"}'],
    end: 'alive',
  },
  { name: 'a Socket.IO DISCONNECT', frames: ['41'], replies: [], end: 'close' },
  { name: 'an EVENT without payload', frames: ['42'], replies: [], end: 'alive' },
  { name: 'an EVENT with an empty array', frames: ['42[]'], replies: [], end: 'close' },
  { name: 'an EVENT whose payload is an object', frames: ['42{"jsongle":{"action":"x"}}'], replies: [], end: 'close' },
  { name: 'an EVENT whose payload is not JSON', frames: ['42not json'], replies: [], end: 'close' },
  { name: 'a jsongle EVENT without argument', frames: ['42["jsongle"]'], replies: ['session-error 400002'], end: 'alive' },
  {
    name: 'a truncated EVENT: the `42["jsongle",` frame prefix alone',
    frames: ['42["jsongle",'],
    replies: [],
    end: 'close',
    regression: 'crashed: the byte count came out as -1 and prom-client threw "It is not possible to decrease a counter"',
  },
  { name: 'a truncated EVENT: cut inside the envelope', frames: ['42["jsongle",{"id":"x","to":'], replies: [], end: 'close' },
  { name: 'a truncated EVENT: cut inside the event name', frames: ['42["jsong'], replies: [], end: 'close' },
  { name: 'a truncated EVENT: one byte past the prefix', frames: ['42["jsongle",{'], replies: [], end: 'close' },
  { name: 'an EVENT for a namespace the client never joined', frames: ['42/nope,["jsongle",{}]'], replies: [], end: 'close' },
  { name: 'an ACK without id or payload', frames: ['43'], replies: [], end: 'alive' },
  { name: 'an ACK for an id the server never used', frames: ['4317[]'], replies: [], end: 'alive' },
  { name: 'a CONNECT_ERROR sent by a client', frames: ['44{"message":"x"}'], replies: [], end: 'close' },
  { name: 'an unknown Socket.IO packet type (7)', frames: ['47["jsongle",{}]'], replies: [], end: 'close' },
  { name: 'a letter as Socket.IO packet type', frames: ['4x["jsongle",{}]'], replies: [], end: 'close' },

  // --- binary attachments and placeholders ------------------------------------------------------
  // §6: JSONgle is JSON only. A BINARY_EVENT (`45…`), a BINARY_ACK (`46…`) or a binary frame gets
  // one 400002, and the server closes the connection; what follows the binary packet is dropped.
  {
    name: 'a BINARY_EVENT without attachment count',
    frames: ['45-["jsongle",{}]'],
    replies: REFUSED_BINARY,
    end: 'refused',
    parserCloses: true,
  },
  { name: 'a BINARY_EVENT without the dash', frames: ['451["jsongle",{}]'], replies: REFUSED_BINARY, end: 'refused', parserCloses: true },
  {
    name: 'a BINARY_EVENT announcing 99 attachments (10 allowed)',
    frames: ['4599-["jsongle",{}]'],
    replies: REFUSED_BINARY,
    end: 'refused',
    parserCloses: true,
  },
  {
    name: 'a binary attachment (invalid UTF-8) where the envelope is expected',
    frames: [`451-${JSON.stringify(['jsongle', placeholder(0)])}`, INVALID_UTF8],
    replies: REFUSED_BINARY,
    end: 'refused',
  },
  {
    name: 'a BINARY_EVENT whose attachment never comes, then a text frame',
    frames: [`451-${JSON.stringify(['jsongle', placeholder(0)])}`],
    replies: REFUSED_BINARY,
    end: 'refused',
    parserCloses: true,
  },
  {
    name: 'a BINARY_EVENT with two attachments announced and one sent, then a text frame',
    frames: [`452-${JSON.stringify(['jsongle', { a: placeholder(0), b: placeholder(1) }])}`, Buffer.from([1])],
    replies: REFUSED_BINARY,
    end: 'refused',
    parserCloses: true,
  },
  {
    name: 'a placeholder pointing past the attachments',
    frames: [`451-${JSON.stringify(['jsongle', placeholder(5)])}`, Buffer.from([1])],
    replies: REFUSED_BINARY,
    end: 'refused',
    parserCloses: true,
  },
  {
    name: 'a placeholder with a string as num',
    frames: [`451-${JSON.stringify(['jsongle', placeholder('0')])}`, Buffer.from([1])],
    replies: REFUSED_BINARY,
    end: 'refused',
    parserCloses: true,
  },
  {
    name: 'a placeholder object in a plain EVENT',
    frames: [event('jsongle', placeholder(0))],
    replies: ['session-error 400002'],
    end: 'alive',
  },
  {
    name: 'a binary attachment as the envelope id',
    frames: [`451-${JSON.stringify(['jsongle', { ...unknownAction(), id: placeholder(0) }])}`, Buffer.from('id')],
    replies: REFUSED_BINARY,
    end: 'refused',
  },
  {
    name: 'a binary attachment as the jsongle object',
    frames: [`451-${JSON.stringify(['jsongle', { ...unknownAction(), jsongle: placeholder(0) }])}`, INVALID_UTF8],
    replies: REFUSED_BINARY,
    end: 'refused',
  },
  {
    name: 'a binary attachment as jsongle.description',
    frames: [
      `451-${JSON.stringify(['jsongle', { ...unknownAction(), jsongle: { action: 'x', description: placeholder(0) } }])}`,
      INVALID_UTF8,
    ],
    replies: REFUSED_BINARY,
    end: 'refused',
  },
  {
    name: 'a BINARY_ACK from the client',
    frames: [`461-${JSON.stringify([placeholder(0)])}`, Buffer.from([1])],
    replies: REFUSED_BINARY,
    end: 'refused',
  },
  {
    name: 'a BINARY_ACK whose attachment never comes',
    frames: [`461-${JSON.stringify([placeholder(0)])}`],
    replies: REFUSED_BINARY,
    end: 'refused',
    parserCloses: true,
  },
  {
    name: 'a valid envelope, then a binary frame: the first is answered, the binary one refused',
    frames: [event('jsongle', unknownAction()), Buffer.from([1, 2, 3])],
    replies: ['session-error 405001', ...REFUSED_BINARY],
    end: 'refused',
    parserCloses: true,
  },
  {
    name: 'a binary packet, then valid envelopes: those after it are dropped',
    frames: [
      `451-${JSON.stringify(['jsongle', placeholder(0)])}`,
      Buffer.from([1]),
      event('jsongle', unknownAction()),
      event('jsongle', unknownAction()),
    ],
    replies: REFUSED_BINARY,
    end: 'refused',
  },
  {
    name: 'two binary packets in a row: one 400002 only',
    frames: [
      `451-${JSON.stringify(['jsongle', placeholder(0)])}`,
      Buffer.from([1]),
      `451-${JSON.stringify(['jsongle', placeholder(0)])}`,
      Buffer.from([2]),
    ],
    replies: REFUSED_BINARY,
    end: 'refused',
  },

  // --- event names ------------------------------------------------------------------------------
  { name: 'an unregistered event name', frames: [event('foo', unknownAction())], replies: [], end: 'alive' },
  { name: 'the event name in upper case', frames: [event('JSONGLE', unknownAction())], replies: [], end: 'alive' },
  { name: 'a number as event name', frames: ['42[1,{"jsongle":{"action":"x"}}]'], replies: [], end: 'alive' },
  { name: '"error" as event name (no listener: must not throw)', frames: [event('error', { message: 'x' })], replies: [], end: 'alive' },
  { name: '"disconnect" as event name (reserved)', frames: [event('disconnect', 'transport close')], replies: [], end: 'close' },
  { name: '"disconnecting" as event name (reserved)', frames: [event('disconnecting', 'x')], replies: [], end: 'close' },
  { name: '"connect" as event name (reserved)', frames: [event('connect')], replies: [], end: 'close' },
  { name: '"newListener" as event name (reserved)', frames: [event('newListener', 'jsongle')], replies: [], end: 'close' },
  { name: '"removeListener" as event name (reserved)', frames: [event('removeListener', 'jsongle')], replies: [], end: 'close' },
  // The marker an oversized packet is swapped for is a per-process name nobody can guess: what
  // was once its name is an unregistered event like any other.
  {
    name: "the oversize marker's former name, sent by a client (an unregistered event now: silence)",
    frames: [event('jsongle-oversized', 7)],
    replies: [],
    end: 'alive',
  },
  {
    name: "a guess at the per-process oversize marker's name (silence)",
    frames: [event(`jsongle-oversized-${randomUUID()}`, 7)],
    replies: [],
    end: 'alive',
  },
  {
    name: "the oversize marker's former name with a toString trap (silence)",
    frames: [event('jsongle-oversized', { toString: 1 })],
    replies: [],
    end: 'alive',
    regression: 'crashed: String(bytes) threw "Cannot convert object to primitive value" out of a Socket.IO listener',
  },

  // --- acks and arguments -----------------------------------------------------------------------
  {
    name: 'a jsongle EVENT asking for an ack (answered as usual, never acked)',
    frames: [`421${JSON.stringify(['jsongle', unknownAction()])}`],
    replies: ['session-error 405001'],
    end: 'alive',
  },
  { name: 'an ack asked for and no argument', frames: ['421["jsongle"]'], replies: ['session-error 400002'], end: 'alive' },
  {
    name: 'an ack id far beyond 2^53',
    frames: [`4299999999999999999999${JSON.stringify(['jsongle', unknownAction()])}`],
    replies: ['session-error 405001'],
    end: 'alive',
  },
  {
    name: '10,000 extra arguments after the envelope',
    frames: [event('jsongle', unknownAction(), ...Array.from({ length: 10_000 }, (_, i) => i))],
    replies: ['session-error 405001'],
    end: 'alive',
  },
  {
    name: '20,000 extra arguments: over maxMessageBytes',
    frames: [event('jsongle', unknownAction(), ...Array.from({ length: 20_000 }, (_, i) => i))],
    replies: ['session-error 413001'],
    end: 'alive',
  },

  // --- nesting ----------------------------------------------------------------------------------
  {
    name: 'a 30,000-deep array as the envelope',
    frames: [`42["jsongle",${deepArray(30_000)}]`],
    replies: ['session-error 400002'],
    end: 'alive',
  },
  {
    name: 'a 10,000-deep object in an extra field',
    frames: [
      `42["jsongle",{"id":"deep","to":"${SERVER_ID}","x":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)},"jsongle":{"action":"x"}}]`,
    ],
    replies: ['session-error 400001 nesting'],
    end: 'alive',
  },
  // The limit: 32 levels of objects and arrays, the envelope itself being the first.
  {
    name: 'an envelope nested exactly 32 levels deep (an extra field): handled',
    frames: [`42["jsongle",{"id":"deep","to":"${SERVER_ID}","x":${deepArray(31)},"jsongle":{"action":"x"}}]`],
    replies: ['session-error 405001'],
    end: 'alive',
  },
  {
    name: 'an envelope nested 33 levels deep (an extra field): 400001',
    frames: [`42["jsongle",{"id":"deep","to":"${SERVER_ID}","x":${deepArray(32)},"jsongle":{"action":"x"}}]`],
    replies: ['session-error 400001 nesting'],
    end: 'alive',
  },
  {
    name: 'an envelope nested 33 levels deep in jsongle, before the hello: 400001, not 403002',
    stage: 'connected',
    frames: [`42["jsongle",{"id":"deep","to":"${SERVER_ID}","jsongle":{"action":"x","y":${deepArray(31)}}}]`],
    replies: ['session-error 400001 nesting'],
    end: 'alive',
  },

  // --- before the hello -----------------------------------------------------------------------
  {
    name: 'a binary attachment as envelope before the hello',
    stage: 'connected',
    frames: [`451-${JSON.stringify(['jsongle', placeholder(0)])}`, INVALID_UTF8],
    replies: REFUSED_BINARY,
    end: 'refused',
  },
  {
    name: 'a hello whose uid is a binary attachment',
    stage: 'connected',
    frames: ({ helloTransaction }) => [
      `451-${JSON.stringify([
        'jsongle',
        {
          id: 'h',
          to: SERVER_ID,
          jsongle: { action: 'iq-result', query: 'session-hello', transaction: helloTransaction, description: { uid: placeholder(0) } },
        },
      ])}`,
      Buffer.from('uid'),
    ],
    replies: REFUSED_BINARY,
    end: 'refused',
  },
  {
    name: 'a hello asking for an ack (the hello succeeds, no ack packet)',
    stage: 'connected',
    frames: ({ helloTransaction }) => [
      `421${JSON.stringify([
        'jsongle',
        {
          id: 'h',
          to: SERVER_ID,
          jsongle: { action: 'iq-result', query: 'session-hello', transaction: helloTransaction, description: { uid: 'acked' } },
        },
      ])}`,
    ],
    replies: ['ack success {reconnectGraceMs,resume}'],
    end: 'alive',
  },
  {
    name: 'a truncated EVENT before the hello',
    stage: 'connected',
    frames: ['42["jsongle",'],
    replies: [],
    end: 'close',
    regression: 'crashed like its twin after the hello (negative byte count)',
  },

  // --- in a P2P room with a peer --------------------------------------------------------------
  {
    name: 'a truncated EVENT in a P2P room: the member must not stay behind',
    stage: 'room',
    frames: ['42["jsongle",'],
    replies: [],
    end: 'close',
    regression: 'crashed, and the connection then never closed: its member stayed in the room as a ghost',
  },
  {
    name: 'a small binary attachment in a relayed description: refused, never relayed, the member leaves',
    stage: 'room',
    frames: ({ rid }) => [`451-${JSON.stringify(['jsongle', text(rid, { body: placeholder(0) })])}`, INVALID_UTF8],
    replies: REFUSED_BINARY,
    end: 'refused',
  },
  {
    name: 'a relayed message, then a binary frame, then another: the first is relayed, the member leaves',
    stage: 'room',
    frames: ({ rid }) => [
      event('jsongle', text(rid, { body: 'before' })),
      Buffer.from([1]),
      event('jsongle', text(rid, { body: 'after' })),
    ],
    replies: ['session-event ack', ...REFUSED_BINARY],
    end: 'refused',
    parserCloses: true,
    peerGets: ['session-text'],
  },
  {
    name: 'a placeholder object in a relayed description (relayed as an object)',
    stage: 'room',
    frames: ({ rid }) => [event('jsongle', text(rid, { body: placeholder(0) }))],
    replies: ['session-event ack'],
    end: 'alive',
    peerGets: ['session-text'],
  },
  {
    name: 'binary attachments of 2 x 100 KB in a relayed message (over maxMessageBytes): refused as binary',
    stage: 'room',
    frames: ({ rid }) => [
      `452-${JSON.stringify(['jsongle', text(rid, { a: placeholder(0), b: placeholder(1) })])}`,
      Buffer.alloc(100_000, 1),
      Buffer.alloc(100_000, 2),
    ],
    replies: REFUSED_BINARY,
    end: 'refused',
  },
  {
    // §6: binary is refused before the size is looked at: 400002 and the close, not 413001.
    name: 'an envelope over maxMessageBytes with a binary attachment: refused as binary, not as too large',
    stage: 'room',
    frames: ({ rid }) => [
      `451-${JSON.stringify(['jsongle', text(rid, { b: placeholder(0), pad: 'x'.repeat(70_000) })])}`,
      Buffer.from([1]),
    ],
    replies: REFUSED_BINARY,
    end: 'refused',
  },
  {
    name: 'a 20,000-deep array in a relayed description',
    stage: 'room',
    frames: ({ rid }) => [
      `42["jsongle",{"id":"deep","to":${JSON.stringify(rid)},"jsongle":{"action":"session-text","description":{"deep":${deepArray(20_000)}}}}]`,
    ],
    replies: ['session-error 400001 nesting'],
    end: 'alive',
    peerGets: [],
    regression: "got 500001: relaying it overflowed the stack in Socket.IO's encoder (hasBinary)",
  },
  {
    name: 'a 20,000-deep array in an extra field of a relayed message',
    stage: 'room',
    frames: ({ rid }) => [
      `42["jsongle",{"id":"deep","to":${JSON.stringify(rid)},"x":${deepArray(20_000)},"jsongle":{"action":"session-text"}}]`,
    ],
    replies: ['session-error 400001 nesting'],
    end: 'alive',
    peerGets: [],
    regression: "got 500001: relaying it overflowed the stack in Socket.IO's encoder (hasBinary)",
  },
  {
    name: 'a relayed description nested to the limit (32 levels in all): relayed',
    stage: 'room',
    frames: ({ rid }) => [
      `42["jsongle",{"id":"deep","to":${JSON.stringify(rid)},"jsongle":{"action":"session-text","description":{"deep":${deepArray(29)}}}}]`,
    ],
    replies: ['session-event ack'],
    end: 'alive',
    peerGets: ['session-text'],
  },
  {
    name: 'a relayed description one level over the limit (33 in all): 400001, not relayed',
    stage: 'room',
    frames: ({ rid }) => [
      `42["jsongle",{"id":"deep","to":${JSON.stringify(rid)},"jsongle":{"action":"session-text","description":{"deep":${deepArray(30)}}}}]`,
    ],
    replies: ['session-error 400001 nesting'],
    end: 'alive',
    peerGets: [],
  },
];

// ---------------------------------------------------------------------------------------------
// HTTP-level abuse of the handshake
// ---------------------------------------------------------------------------------------------

interface HttpResult {
  /** The status of the first response, if one came. */
  status?: number;
  /** Everything received, as latin1 text. */
  raw: string;
  /** The server closed the connection. */
  closed: boolean;
}

/** Writes raw bytes to the ws port (over TLS unless `plain`) and collects what comes back until the server closes or `timeoutMs`. */
function rawHttp(port: number, chunks: (string | Buffer)[], options: { plain?: boolean; timeoutMs?: number } = {}): Promise<HttpResult> {
  return new Promise((resolve) => {
    const socket = options.plain
      ? net.connect({ port, host: '127.0.0.1' })
      : tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, servername: 'localhost' });
    let raw = '';
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      const status = /^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1];
      resolve({ raw, closed, ...(status ? { status: Number(status) } : {}) });
    };
    const timer = setTimeout(() => finish(false), options.timeoutMs ?? OUTCOME_TIMEOUT_MS);
    socket.once(options.plain ? 'connect' : 'secureConnect', () => {
      for (const chunk of chunks) socket.write(chunk);
    });
    socket.on('data', (data: Buffer) => (raw += data.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('close', () => finish(true));
  });
}

const HANDSHAKE = '/socket.io/?EIO=4&transport=polling';
const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

function httpRequest(method: string, path: string, headers: string[] = [], body?: string | Buffer): string | Buffer {
  const head = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', ...headers];
  if (body !== undefined) head.push(`Content-Length: ${Buffer.byteLength(body)}`);
  const text = `${head.join('\r\n')}\r\n\r\n`;
  return body === undefined ? text : Buffer.concat([Buffer.from(text, 'latin1'), Buffer.isBuffer(body) ? body : Buffer.from(body)]);
}

const upgrade = (path: string, extra: string[] = []) =>
  httpRequest('GET', path, [
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Version: 13',
    `Sec-WebSocket-Key: ${WS_KEY}`,
    ...extra,
  ]);

/** A fresh Engine.IO polling session id (the handshake itself is a normal request). */
async function pollingSid(port: number): Promise<string> {
  const result = await rawHttp(port, [httpRequest('GET', HANDSHAKE)]);
  const sid = /"sid":"([^"]+)"/.exec(result.raw)?.[1];
  if (!sid) throw new Error(`no polling handshake: ${result.raw}`);
  return sid;
}

/** The ws port's answer outside /socket.io/: JSON, in the REST API's error shape. */
const notFound = (method: string, path: string) =>
  new RegExp(
    `^HTTP/1\\.1 404 [^]*\r\ncontent-type: application/json\r\n[^]*${JSON.stringify({
      errorCode: 404000,
      errorDetails: `No route ${method} ${path} on the Socket.IO port`,
    }).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`,
    'i',
  );

interface HttpRow {
  name: string;
  send(port: number): Promise<HttpResult>;
  /** The HTTP status expected, or `close` for a close without an HTTP answer. */
  expect: number | 'close';
  /** Matched against the whole raw answer. */
  body?: RegExp;
}

const HTTP_ROWS: HttpRow[] = [
  {
    name: '3,000 headers (over the 16 KB header limit)',
    send: (port) =>
      rawHttp(port, [
        httpRequest(
          'GET',
          HANDSHAKE,
          Array.from({ length: 3000 }, (_, i) => `x-header-${i}: value`),
        ),
      ]),
    expect: 431,
  },
  {
    name: '2,500 tiny headers (under 16 KB, over maxHeadersCount): a normal handshake',
    send: (port) =>
      rawHttp(port, [
        httpRequest(
          'GET',
          HANDSHAKE,
          Array.from({ length: 2500 }, (_, i) => `x${i}:v`),
        ),
      ]),
    expect: 200,
    body: /"sid":/,
  },
  {
    name: 'a 100 KB query string',
    send: (port) => rawHttp(port, [httpRequest('GET', `${HANDSHAKE}&x=${'a'.repeat(100_000)}`)]),
    expect: 431,
  },
  {
    name: 'DELETE on the handshake',
    send: (port) => rawHttp(port, [httpRequest('DELETE', HANDSHAKE)]),
    expect: 400,
    body: /Bad handshake method/,
  },
  {
    name: 'PUT with a body and no sid',
    send: (port) => rawHttp(port, [httpRequest('PUT', HANDSHAKE, [], '40')]),
    expect: 400,
    body: /Bad handshake method/,
  },
  { name: 'OPTIONS (no CORS configured)', send: (port) => rawHttp(port, [httpRequest('OPTIONS', HANDSHAKE)]), expect: 400 },
  { name: 'an unknown method (BREW)', send: (port) => rawHttp(port, [httpRequest('BREW', HANDSHAKE)]), expect: 400 },
  {
    name: 'EIO=3 (not allowed)',
    send: (port) => rawHttp(port, [httpRequest('GET', '/socket.io/?EIO=3&transport=polling')]),
    expect: 400,
    body: /Unsupported protocol version/,
  },
  {
    name: 'EIO=banana',
    send: (port) => rawHttp(port, [httpRequest('GET', '/socket.io/?EIO=banana&transport=polling')]),
    expect: 400,
    body: /Unsupported protocol version/,
  },
  {
    name: 'no EIO at all',
    send: (port) => rawHttp(port, [httpRequest('GET', '/socket.io/?transport=polling')]),
    expect: 400,
    body: /Unsupported protocol version/,
  },
  {
    name: 'an unknown transport',
    send: (port) => rawHttp(port, [httpRequest('GET', '/socket.io/?EIO=4&transport=carrier-pigeon')]),
    expect: 400,
    body: /Transport unknown/,
  },
  {
    name: 'an unknown sid on a polling GET',
    send: (port) => rawHttp(port, [httpRequest('GET', `${HANDSHAKE}&sid=nope`)]),
    expect: 400,
    body: /Session ID unknown/,
  },
  {
    name: 'an unknown sid on a polling POST',
    send: (port) => rawHttp(port, [httpRequest('POST', `${HANDSHAKE}&sid=nope`, [], '40')]),
    expect: 400,
    body: /Session ID unknown/,
  },
  {
    name: 'a polling POST with a 2 MB body (Content-Length)',
    send: async (port) => rawHttp(port, [httpRequest('POST', `${HANDSHAKE}&sid=${await pollingSid(port)}`, [], 'x'.repeat(2_000_000))]),
    expect: 413,
  },
  {
    name: 'a polling POST with a 2 MB chunked body',
    send: async (port) => {
      const sid = await pollingSid(port);
      const chunk = 'x'.repeat(500_000);
      const head = `POST ${HANDSHAKE}&sid=${sid} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n`;
      const body = Array.from({ length: 4 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('');
      return rawHttp(port, [head, body, '0\r\n\r\n']);
    },
    expect: 413,
  },
  {
    name: 'a polling POST with malformed Engine.IO packets',
    send: async (port) => rawHttp(port, [httpRequest('POST', `${HANDSHAKE}&sid=${await pollingSid(port)}`, [], '9\u001e4x\u001e')]),
    expect: 200,
  },
  {
    name: 'Content-Length twice',
    send: (port) => rawHttp(port, [`POST ${HANDSHAKE} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab`]),
    expect: 400,
  },
  {
    name: 'a negative Content-Length',
    send: (port) => rawHttp(port, [`POST ${HANDSHAKE} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nab`]),
    expect: 400,
  },
  { name: 'a header name with a space', send: (port) => rawHttp(port, [`GET ${HANDSHAKE} HTTP/1.1\r\nHo st: x\r\n\r\n`]), expect: 400 },
  { name: 'garbage instead of a request line', send: (port) => rawHttp(port, ['\u0000\u0001\u0002 garbage\r\n\r\n']), expect: 400 },
  {
    name: 'a websocket upgrade with a bad Sec-WebSocket-Key',
    send: (port) =>
      rawHttp(port, [
        httpRequest('GET', '/socket.io/?EIO=4&transport=websocket', [
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 13',
          'Sec-WebSocket-Key: short',
        ]),
      ]),
    expect: 400,
  },
  {
    name: 'a websocket upgrade with an unknown version',
    send: (port) =>
      rawHttp(port, [
        httpRequest('GET', '/socket.io/?EIO=4&transport=websocket', [
          'Upgrade: websocket',
          'Connection: Upgrade',
          'Sec-WebSocket-Version: 99',
          `Sec-WebSocket-Key: ${WS_KEY}`,
        ]),
      ]),
    expect: 400,
  },
  {
    name: 'a websocket upgrade with an unknown sid',
    send: (port) => rawHttp(port, [upgrade('/socket.io/?EIO=4&transport=websocket&sid=nope')]),
    expect: 400,
    body: /Session ID unknown/,
  },
  {
    name: 'a websocket upgrade with EIO=3: upgraded, then closed',
    send: (port) => rawHttp(port, [upgrade('/socket.io/?EIO=3&transport=websocket')]),
    expect: 101,
  },
  { name: 'plain HTTP on the TLS port', send: (port) => rawHttp(port, [httpRequest('GET', HANDSHAKE)], { plain: true }), expect: 'close' },
  {
    name: 'a garbage TLS record',
    send: (port) => rawHttp(port, [Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])], { plain: true }),
    expect: 'close',
  },
  // Outside /socket.io/, the ws port answers a JSON 404 at once (it once held the request, unanswered, until Node's timeout).
  {
    name: 'a path other than /socket.io/ on the ws port: a JSON 404',
    send: (port) => rawHttp(port, [httpRequest('GET', '/')]),
    expect: 404,
    body: notFound('GET', '/'),
  },
  {
    name: 'a REST route with a body on the ws port: a JSON 404',
    send: (port) => rawHttp(port, [httpRequest('POST', '/rooms', ['Content-Type: application/json'], '{"rid":"x"}')]),
    expect: 404,
    body: notFound('POST', '/rooms'),
  },
  {
    name: '/socket.io without its trailing slash: a JSON 404',
    send: (port) => rawHttp(port, [httpRequest('GET', '/socket.io?EIO=4&transport=polling')]),
    expect: 404,
    body: notFound('GET', '/socket.io?EIO=4&transport=polling'),
  },
];

/**
 * Requests that are never finished: the server cannot answer them (Node drops them only after its
 * headersTimeout, 60 s), and must keep serving everyone else while they hang.
 */
const HALF_SENT_ROWS: { name: string; chunks: (port: number) => Promise<(string | Buffer)[]>; plain?: boolean }[] = [
  { name: 'a request line and half the headers', chunks: async () => [`GET ${HANDSHAKE} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: `] },
  {
    name: 'a polling POST promising 1 MB and sending 10 bytes',
    chunks: async (port) => [
      `POST ${HANDSHAKE}&sid=${await pollingSid(port)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n0123456789`,
    ],
  },
  {
    name: 'a websocket upgrade cut before the blank line',
    chunks: async () => [upgrade('/socket.io/?EIO=4&transport=websocket').toString().slice(0, -2)],
  },
  {
    name: 'the first bytes of a TLS ClientHello',
    chunks: async () => [Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])],
    plain: true,
  },
];

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

describe('raw frames and handshake abuse against the real server process', () => {
  let current: ServerProcess | undefined;
  const live = (): ServerProcess => {
    if (!current) throw new Error('the server process did not start');
    return current;
  };
  let outputMark = 0;
  /** Set at the very end of each row: false means the row failed somewhere. */
  let lastRowPassed = true;
  /** users_count and conferences_count when the row started. */
  let baseline = { connections: 0, rooms: 0 };
  const open: { close(): void }[] = [];
  const counts = { frameRows: 0, httpRows: 0, halfSentRows: 0, respawns: 0 };

  const start = () =>
    spawnServer({
      // spawnServer reads the ports from the info line that announces the start.
      logDefaultLevel: 'info',
      maxConnectionsPerAddress: '100000',
      maxMessagesPerSecond: '1000',
      maxConcurrentUsers: '1000',
      // A dropped connection's session is otherwise held for a resume (issue #9): here, every
      // close must free its seat and its rooms at once, so that a row that leaks is seen.
      reconnectGraceMs: '0',
    });

  beforeAll(async () => {
    current = await start();
  }, 30_000);

  beforeEach(async () => {
    // A row that failed (a crash, a hung or leaked connection) fails alone: the next rows get a
    // fresh process, so that what it left behind cannot fail them too.
    const server = live();
    if (!lastRowPassed || server.child.exitCode !== null || server.child.signalCode !== null) {
      counts.respawns++;
      await server.stop('SIGKILL');
      current = await start();
    }
    lastRowPassed = false;
    outputMark = live().output().length;
    const before = await stats();
    baseline = { connections: before.users_count ?? 0, rooms: before.conferences_count ?? 0 };
  }, 30_000);

  afterEach(() => {
    for (const connection of open.splice(0)) connection.close();
  });

  afterAll(async () => {
    const server = current;
    if (server) {
      // The shutdown is another test's subject: here it only has to end, by force if need be.
      const force = setTimeout(() => server.child.kill('SIGKILL'), 12_000);
      await server.stop('SIGTERM');
      clearTimeout(force);
    }
    // The closing note of issue #5 wants the counts.
    console.log(
      `raw-frames: ${counts.frameRows} frame rows, ${counts.httpRows} HTTP rows, ${counts.halfSentRows} half-sent rows run; ${counts.respawns} respawns`,
    );
  }, 20_000);

  const wsPort = () => Number(new URL(live().wsUrl).port);
  const rest = () => request.agent(live().restUrl).disableTLSCerts();

  async function stats(): Promise<Record<string, number>> {
    const response = await rest().get('/stats');
    return response.body as Record<string, number>;
  }

  /**
   * Connections and rooms left behind since the row started (0 and 0 when all is well), after
   * polling /stats (bounded) for the row's closes to be cleaned up. Relative to the start of the
   * row, so that a row that leaks fails alone.
   */
  async function leftBehind(): Promise<{ connections: number; rooms: number }> {
    const deadline = Date.now() + OUTCOME_TIMEOUT_MS;
    for (;;) {
      const now = await stats();
      const left = { connections: (now.users_count ?? 0) - baseline.connections, rooms: (now.conferences_count ?? 0) - baseline.rooms };
      if ((left.connections === 0 && left.rooms === 0) || Date.now() > deadline) return left;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async function expectNothingLeft(): Promise<void> {
    expect(await leftBehind()).toEqual({ connections: 0, rooms: 0 });
  }

  /** The point of every row: the process is up and serves a normal client end to end. */
  async function expectServerAlive(): Promise<void> {
    expect({ exitCode: live().child.exitCode, signal: live().child.signalCode }).toEqual({ exitCode: null, signal: null });
    const witness = await connectAs(live().wsUrl, 'witness');
    open.push(witness);
    const rid = `witness-${randomUUID()}`;
    const answer = await witness.join(rid);
    expect(answer.jsongle).toMatchObject({ action: 'iq-result', query: 'session-join', description: { rid, members: [] } });
    witness.close();
    const ping = await rest().get('/ping');
    expect(ping.status).toBe(200);
    expect(ping.body).toEqual({ status: 'ok' });
    expect(processFailures()).toEqual([]);
  }

  /** Opens a raw connection and brings it to `stage`; in stage `room`, with a normal peer in the room. */
  async function prepare(stage: Stage): Promise<{ raw: RawConnection; context: RowContext; peer?: TestClient }> {
    const raw = await RawConnection.open(live().wsUrl);
    open.push(raw);
    const context: RowContext = { helloTransaction: '', rid: `raw-room-${randomUUID()}` };
    if (stage === 'engine') return { raw, context };

    raw.send('40{"appToken":""}');
    await raw.take((frame) => 'text' in frame && frame.text.startsWith('40{"sid"'), 'the CONNECT answer');
    const hello = await raw.takeEnvelope((m) => m.jsongle.action === 'iq-get' && m.jsongle.query === 'session-hello', 'the session-hello');
    raw.sid = hello.to;
    raw.helloTransaction = context.helloTransaction = String(hello.jsongle.transaction);
    if (stage === 'connected') return { raw, context };

    raw.sendEnvelope({
      id: randomUUID(),
      from: null,
      to: SERVER_ID,
      jsongle: { action: 'iq-result', query: 'session-hello', transaction: raw.helloTransaction, description: { uid: 'raw' } },
    });
    const ack = await raw.takeEnvelope((m) => m.jsongle.action === 'ack' && m.jsongle.status === 'success', 'the hello ack');
    // Issue #9: the session's resume token, and the grace (0 here: nothing is held).
    expect(ack.jsongle.description).toEqual({ resume: expect.stringMatching(/^[\w-]{32}$/) as unknown, reconnectGraceMs: 0 });
    if (stage === 'hello') return { raw, context };

    const peer = await connectAs(live().wsUrl, 'peer');
    open.push(peer);
    await peer.join(context.rid);
    const transaction = randomUUID();
    raw.sendEnvelope({
      id: randomUUID(),
      from: null,
      to: SERVER_ID,
      jsongle: { action: 'iq-set', query: 'session-join', namespace: 'room', transaction, description: { rid: context.rid } },
    });
    await raw.takeEnvelope((m) => m.jsongle.transaction === transaction && m.jsongle.action === 'iq-result', 'the join answer');
    await peer.nextAction('session-event', { event: 'joined' });
    return { raw, context, peer };
  }

  /**
   * Sends the row, then a probe whose answer is known (a CONNECT before the connection has one,
   * else an envelope with an unknown action): a connection answers in order, so what arrives
   * before the probe's answer is the row's answer, and no timer decides what "silence" is.
   */
  async function outcomeOf(
    raw: RawConnection,
    stage: Stage,
    frames: Frame[],
  ): Promise<{ replies: string[]; end: 'alive' | 'close' | 'hung' }> {
    const probeId = `probe-${randomUUID()}`;
    const isProbeAnswer = (frame: Received): boolean => {
      if (stage === 'engine') return 'text' in frame && frame.text.startsWith('40{"sid"');
      const message = envelopeOf(frame);
      return message?.jsongle.action === 'session-error' && message.jsongle.description?.mid === probeId;
    };
    for (const frame of frames) raw.send(frame);
    if (stage === 'engine') raw.send('40{"appToken":""}');
    else raw.sendEnvelope({ id: probeId, from: null, to: SERVER_ID, jsongle: { action: 'probe' } });

    const answered = await raw
      .until(
        () => {
          const index = raw.inbox.findIndex(isProbeAnswer);
          if (index >= 0) return { index, end: 'alive' as const };
          return raw.closeEvent ? { index: raw.inbox.length, end: 'close' as const } : undefined;
        },
        OUTCOME_TIMEOUT_MS,
        'answer to the probe, nor a close',
      )
      // Neither answered nor closed: the connection hangs, which no row expects.
      .catch(() => ({ index: raw.inbox.length, end: 'hung' as const }));
    return { replies: raw.inbox.slice(0, answered.index).map(render), end: answered.end };
  }

  /** Lines the process printed since the row started that say something escaped every handler. */
  const processFailures = () =>
    live()
      .output()
      .slice(outputMark)
      .split('\n')
      .filter((line) => PROCESS_FAILURE.test(line))
      .map((line) => line.slice(0, 300));

  test.each(FRAME_ROWS.map((row) => [row.name, row] as const))('frame row: %s', async (_name, row) => {
    counts.frameRows++;
    const stage = row.stage ?? 'hello';
    const { raw, context, peer } = await prepare(stage);
    const frames = typeof row.frames === 'function' ? row.frames(context) : row.frames;
    const outcome = await outcomeOf(raw, stage, frames);
    const closing = row.end !== 'alive';
    const observed: Record<string, unknown> = { ...outcome };
    const expected: Record<string, unknown> = { replies: row.replies, end: closing ? 'close' : 'alive' };
    if (row.end === 'refused') {
      // The server's disconnect(true) after a refused binary packet sends `41`, once, last; when
      // Socket.IO's parser closes the transport first (on the same packet, or on the next frame:
      // a race), it does not come. The 400002 is sent as the binary packet is read, while the
      // answers to what came before it may still be in the connection's queue: their order is open.
      const disconnectPacket = outcome.replies.at(-1) === '41';
      observed.replies = (disconnectPacket ? outcome.replies.slice(0, -1) : outcome.replies).sort();
      expected.replies = [...row.replies].sort();
      observed.disconnectPacket = disconnectPacket;
      expected.disconnectPacket = row.parserCloses ? disconnectPacket : true;
    }
    if (closing && outcome.end === 'close') {
      // A clean close: a WebSocket close frame, never a reset.
      observed.reset = raw.closeEvent?.code === 1006;
      expected.reset = false;
      if (row.wsCode !== undefined) {
        observed.wsCode = raw.closeEvent?.code;
        expected.wsCode = row.wsCode;
      }
    }

    if (peer) {
      if (closing) {
        // §4: the member of a closed connection is never left behind; what it sent before its
        // close was handled first (queued ahead of the clean-up), what followed was dropped.
        const isLeft = (m: Envelope) => m.jsongle.action === 'session-event' && m.jsongle.event === 'left';
        const got: string[] = [];
        observed.peerToldLeft = false;
        for (;;) {
          const message = await peer.next((m) => m.from === context.rid || isLeft(m), undefined, '`left`').catch(() => undefined);
          if (!message) break;
          if (!isLeft(message)) {
            got.push(message.jsongle.action);
            continue;
          }
          const description = message.jsongle.description;
          observed.peerToldLeft = description?.rid === context.rid && (description.member as { sid?: string }).sid === raw.sid;
          break;
        }
        expected.peerToldLeft = true;
        observed.peerGets = got;
        expected.peerGets = row.peerGets ?? [];
      } else if (outcome.end === 'alive') {
        // What the peer got from this connection, up to a marker sent after the row.
        const marker = text(context.rid, { body: 'marker' });
        raw.sendEnvelope(marker);
        const got: string[] = [];
        for (;;) {
          const message = await peer.next((m) => m.from === context.rid, undefined, 'the marker');
          if (message.id === marker.id) break;
          got.push(message.jsongle.action);
        }
        observed.peerGets = got;
        expected.peerGets = row.peerGets ?? [];
      }
    }

    raw.close();
    peer?.close();
    observed.leftBehind = await leftBehind();
    expected.leftBehind = { connections: 0, rooms: 0 };
    observed.processFailures = processFailures();
    expected.processFailures = [];
    expect(observed).toEqual(expected);
    await expectServerAlive();
    lastRowPassed = true;
  });

  test.each(HTTP_ROWS.map((row) => [row.name, row] as const))('HTTP row: %s', async (_name, row) => {
    counts.httpRows++;
    const result = await row.send(wsPort());
    if (row.expect === 'close') {
      expect({ closed: result.closed, status: result.status }).toEqual({ closed: true, status: undefined });
    } else {
      expect({ status: result.status, closed: result.closed }).toEqual({ status: row.expect, closed: true });
    }
    if (row.body) expect(result.raw).toMatch(row.body);
    await expectServerAlive();
    await expectNothingLeft();
    lastRowPassed = true;
  });

  test.each(HALF_SENT_ROWS.map((row) => [row.name, row] as const))(
    'half-sent request: %s (others are served meanwhile)',
    async (_name, row) => {
      counts.halfSentRows++;
      const socket = row.plain
        ? net.connect({ port: wsPort(), host: '127.0.0.1' })
        : tls.connect({ port: wsPort(), host: '127.0.0.1', rejectUnauthorized: false });
      open.push({ close: () => socket.destroy() });
      socket.on('error', () => undefined);
      let received = '';
      socket.on('data', (data: Buffer) => (received += data.toString('latin1')));
      await new Promise<void>((resolve, reject) => {
        socket.once(row.plain ? 'connect' : 'secureConnect', () => resolve());
        socket.once('error', reject);
      });
      for (const chunk of await row.chunks(wsPort())) socket.write(chunk);

      // Several of them at once, each holding a socket: still, a normal client is served end to end.
      await expectServerAlive();
      // Nothing can be answered yet: the request is not complete (Node drops it after headersTimeout).
      expect(received).toBe('');
      socket.destroy();
      await expectServerAlive();
      await expectNothingLeft();
      lastRowPassed = true;
    },
  );

  test('the tables ran in full', () => {
    lastRowPassed = true;
    expect(counts.frameRows).toBe(FRAME_ROWS.length);
    expect(counts.httpRows).toBe(HTTP_ROWS.length);
    expect(counts.halfSentRows).toBe(HALF_SENT_ROWS.length);
  });
});
