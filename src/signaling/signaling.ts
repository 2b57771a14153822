import { randomUUID } from 'node:crypto';
import type { Config } from '../config';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import { envelope, helloRequest, sessionError } from '../protocol/messages';
import type { Registry } from '../registry/registry';
import { connectionGate } from './connection-gate';
import { createDispatcher } from './dispatcher';
import { announceDeparture } from './handlers/session-leave';
import { Session } from './session';
import type { HandlerContext, SignalingServer, SignalingSocket } from './types';

export interface Signaling {
  /** Tells every connection of this process that the server is going away (before it closes them). */
  announceShutdown(): void;
  /** Resolves when every closed connection has been cleaned out of the registry. */
  drain(): Promise<void>;
}

/** The marker a too-large packet is replaced with, so that it is never parsed (see countBytes). */
const OVERSIZED_EVENT = 'jsongle-oversized';
/** How a `jsongle` event of the default namespace starts on the wire (a Socket.IO EVENT packet). */
const JSONGLE_FRAME = '2["jsongle",';

/**
 * Wires the JSONgle protocol onto a Socket.IO server: the gate, the session-hello, the dispatcher
 * and the clean-up of every connection however it ends.
 */
export function attachSignaling(
  io: SignalingServer,
  deps: { config: Readonly<Config>; registry: Registry; metrics: Metrics; logger: Logger; probeKey: string; about: Record<string, string> },
): Signaling {
  const { config, registry, metrics, logger } = deps;
  // A recipient on this process is reached without the adapter: with Redis, nothing is published
  // for it, and delivery within one process goes on through a Redis outage.
  const send = (envelope: Parameters<HandlerContext['send']>[0]) => {
    (io.sockets.adapter.rooms.has(envelope.to) ? io.local : io).to(envelope.to).emit('jsongle', envelope);
  };
  const context: HandlerContext = { config, registry, metrics, send };
  const dispatch = createDispatcher(context);
  const gate = connectionGate(deps);
  const cleanups = new Set<Promise<void>>();

  io.use((socket, next) => gate.middleware(socket, next));
  // Members taken out by the registry itself (a dead process, a disconnect recorded late).
  registry.on('member-evicted', (room, member) => announceDeparture(context, room, member));

  /**
   * Counts bytes where Socket.IO reads and writes them, once per packet and without serializing
   * again (PROTOCOL.md §9), and enforces maxMessageBytes (§6) before the packet is parsed: the
   * engine's `packet` event fires before Socket.IO decodes the packet, so an oversized one is
   * swapped for a small marker event and the connection survives.
   */
  function countBytes(socket: SignalingSocket, session: Session): void {
    socket.conn.on('packet', (packet: { type: string; data?: unknown }) => {
      if (packet.type !== 'message' || typeof packet.data !== 'string') return;
      const isJsongle = packet.data.startsWith(JSONGLE_FRAME);
      // The envelope alone: without the frame `2["jsongle",` … `]` around it.
      const bytes = Buffer.byteLength(packet.data) - (isJsongle ? JSONGLE_FRAME.length + 1 : 0);
      if (isJsongle) metrics.received(bytes);
      if (bytes > config.maxMessageBytes) {
        packet.data = `2${JSON.stringify([OVERSIZED_EVENT, bytes])}`;
        session.log.info('oversized message dropped', { bytes });
      }
    });
    socket.conn.on('packetCreate', (packet: { type: string; data?: unknown }) => {
      if (packet.type === 'message' && typeof packet.data === 'string' && packet.data.startsWith(JSONGLE_FRAME)) {
        metrics.sent(Buffer.byteLength(packet.data) - JSONGLE_FRAME.length - 1);
      }
    });
  }

  io.on('connection', (socket) => {
    const { sessionId, probe, openedAt } = socket.data;
    const session = new Session(
      sessionId,
      randomUUID(),
      logger.child({ module: 'signaling', session: sessionId }),
      config.maxMessagesPerSecond,
    );
    // The session identity is a Socket.IO room of one: messages to it reach this socket from any process.
    void socket.join(sessionId);
    if (!probe) {
      metrics.connectionOpened();
      countBytes(socket, session);
    }
    session.log.debug('connected', { address: socket.data.address, probe });

    const refuse = (code: 413001 | 429001, details: string, mid?: string) => {
      metrics.errorSent(code);
      send(sessionError(config.id, sessionId, code, details, mid));
    };
    // onAny, not on('jsongle'): Socket.IO 4.8 defers named listeners by a tick and drops the
    // event if the socket closed meanwhile (socket.io#5213), so a session-terminate sent right
    // before a clean close would be lost. onAny listeners run before that deferral.
    socket.onAny((event: string, raw: unknown) => {
      // Too late: the clean-up is queued; handling this could put a closed connection in a room.
      if (session.closed) return;
      if (event === OVERSIZED_EVENT) {
        refuse(413001, `Message too large: ${String(raw)} bytes, the limit is ${config.maxMessageBytes}`);
        return;
      }
      if (event !== 'jsongle') return;
      if (!session.allowMessage()) {
        const mid = (raw as { id?: unknown } | null)?.id;
        refuse(
          429001,
          `Too many messages: at most ${config.maxMessagesPerSecond} per second; this one was dropped`,
          typeof mid === 'string' ? mid : undefined,
        );
        return;
      }
      void session.enqueue(() => dispatch(session, raw));
    });

    const helloTimer = setTimeout(() => {
      if (session.member) return;
      session.log.info('session-hello not completed in time: disconnecting', { helloTimeoutMs: config.helloTimeoutMs });
      socket.disconnect(true);
    }, config.helloTimeoutMs);

    socket.on('disconnect', (reason) => {
      clearTimeout(helloTimer);
      if (!probe) metrics.connectionClosed(openedAt);
      session.log.debug('disconnected', { reason });
      // Packets read together with the close reach onAny a tick after this event: the clean-up
      // waits for them (setImmediate runs after those ticks), then is queued behind them, so that
      // neither a last message nor a seat is lost, and a join in flight leaves no ghost member.
      const cleanup = new Promise((resolve) => setImmediate(resolve))
        .then(() => {
          session.closed = true;
          return session.enqueue(async () => {
            const rooms = await gate.release(socket);
            if (session.member) for (const room of rooms) announceDeparture(context, room, session.member);
          });
        })
        .catch((error: unknown) => {
          session.log.error('clean-up after disconnect failed', { error: String(error) });
        })
        .finally(() => cleanups.delete(cleanup));
      cleanups.add(cleanup);
    });

    send(helloRequest(config.id, sessionId, session.helloTransaction, { ...deps.about, connected: new Date(openedAt).toJSON() }));
  });

  return {
    announceShutdown() {
      const time = new Date().toJSON();
      for (const socket of io.of('/').sockets.values()) {
        socket.emit(
          'jsongle',
          envelope(config.id, socket.data.sessionId, { action: 'session-event', event: 'shutdown', description: { shutdown: time } }),
        );
      }
    },
    async drain() {
      while (cleanups.size > 0) await Promise.all([...cleanups]);
    },
  };
}
