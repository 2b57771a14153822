import { randomUUID } from 'node:crypto';
import { io, type Socket } from 'socket.io-client';
import type { Envelope } from '../../src/protocol/envelope';

export const DEFAULT_TIMEOUT_MS = 3000;

type Match = (message: Envelope) => boolean;

/**
 * A real socket.io-client connection with an inbox: every `jsongle` envelope it receives is kept
 * until a test takes it with `next`, so no test sleeps or races an event.
 */
export class TestClient {
  readonly inbox: Envelope[] = [];
  /** The session identity the server gave this connection (from its session-hello). */
  sid = '';
  uid = '';
  private readonly waiters = new Set<() => void>();

  constructor(readonly socket: Socket) {
    socket.on('jsongle', (message: Envelope) => {
      this.inbox.push(message);
      for (const wake of this.waiters) wake();
    });
  }

  /** Resolves with the first received envelope that matches (taking it out of the inbox). */
  next(match: Match = () => true, timeoutMs = DEFAULT_TIMEOUT_MS, what = 'a matching message'): Promise<Envelope> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const index = this.inbox.findIndex(match);
        if (index < 0) return;
        done();
        resolve(this.inbox.splice(index, 1)[0] as Envelope);
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `${this.uid || 'client'}: no ${what} within ${timeoutMs} ms; inbox: ${JSON.stringify(this.inbox.map((m) => m.jsongle))}`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves with the next envelope of that action (and, if given, event or query). */
  nextAction(action: string, extra: Partial<Envelope['jsongle']> = {}, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Envelope> {
    const wanted = { action, ...extra } as Record<string, unknown>;
    return this.next(
      (m) => Object.entries(wanted).every(([key, value]) => (m.jsongle as Record<string, unknown>)[key] === value),
      timeoutMs,
      JSON.stringify(wanted),
    );
  }

  /** Fails if anything matching arrives within `ms` (the one place a test waits for nothing). */
  async expectNothing(match: Match = () => true, ms = 200): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    const found = this.inbox.find(match);
    if (found) throw new Error(`unexpected message: ${JSON.stringify(found)}`);
  }

  /** Sends a raw value on the `jsongle` event. */
  emit(raw: unknown): void {
    this.socket.emit('jsongle', raw);
  }

  /** Sends an envelope with a fresh id; returns that id. */
  send(to: string, jsongle: Record<string, unknown>): string {
    const id = randomUUID();
    this.emit({ id, from: null, to, jsongle });
    return id;
  }

  /** Answers the server's session-hello; resolves with the server's ack. */
  async hello(uid: string, dn?: string): Promise<Envelope> {
    const request = await this.nextAction('iq-get', { query: 'session-hello' });
    this.sid = request.to;
    this.uid = uid;
    const transaction = request.jsongle.transaction;
    this.send(request.from, {
      action: 'iq-result',
      query: 'session-hello',
      transaction,
      description: dn === undefined ? { uid } : { uid, dn },
    });
    return this.next((m) => m.jsongle.action === 'ack' && m.jsongle.transaction === transaction, DEFAULT_TIMEOUT_MS, 'hello ack');
  }

  /** Sends an iq-set and resolves with its answer (iq-result or iq-error). */
  async iq(query: string, description: Record<string, unknown>, namespace = query === 'muc-join' ? 'muc' : 'room'): Promise<Envelope> {
    const transaction = randomUUID();
    this.send('jsongle-server', { action: 'iq-set', query, namespace, transaction, description });
    return this.next(
      (m) => m.jsongle.transaction === transaction && m.jsongle.action.startsWith('iq-'),
      DEFAULT_TIMEOUT_MS,
      `answer to ${query}`,
    );
  }

  join(rid: string): Promise<Envelope> {
    return this.iq('session-join', { rid });
  }

  mucJoin(rid: string): Promise<Envelope> {
    return this.iq('muc-join', { rid });
  }

  leave(rid: string): Promise<Envelope> {
    return this.iq('session-leave', { rid });
  }

  close(): void {
    this.socket.close();
  }
}

export interface ConnectOptions {
  appToken?: string;
  transports?: string[];
  /** A session's resume token, from its hello ack (reconnect grace, issue #9). */
  resume?: string;
}

/** Opens a connection; resolves once Socket.IO has connected (the hello is not answered yet). */
export function connect(url: string, options: ConnectOptions = {}): Promise<TestClient> {
  const socket = io(url, {
    transports: options.transports ?? ['websocket'],
    auth:
      options.resume === undefined ? { appToken: options.appToken ?? '' } : { appToken: options.appToken ?? '', resume: options.resume },
    rejectUnauthorized: false,
    reconnection: false,
    forceNew: true,
    timeout: DEFAULT_TIMEOUT_MS,
  });
  const client = new TestClient(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(client));
    socket.once('connect_error', (error) => {
      socket.close();
      reject(error);
    });
  });
}

/** Opens a connection and completes its hello: the usual start of a test. */
export async function connectAs(url: string, uid: string, options: ConnectOptions & { dn?: string } = {}): Promise<TestClient> {
  const client = await connect(url, options);
  const ack = await client.hello(uid, options.dn);
  if (ack.jsongle.status !== 'success') throw new Error(`hello failed for ${uid}: ${JSON.stringify(ack)}`);
  return client;
}

/** The `connect_error` a refused connection gets. */
export async function refusal(url: string, options: ConnectOptions = {}): Promise<Error & { data?: unknown }> {
  try {
    const client = await connect(url, options);
    client.close();
  } catch (error) {
    return error as Error & { data?: unknown };
  }
  throw new Error('the connection was accepted');
}
