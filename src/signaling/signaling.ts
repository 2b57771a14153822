import { randomUUID } from 'node:crypto';
import type { Config } from '../config';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import { envelope, helloRequest, sessionError } from '../protocol/messages';
import type { Registry } from '../registry/registry';
import { connectionGate } from './connection-gate';
import { reconnectGrace, RESUME_BUFFER_LIMIT } from './reconnect-grace';
import { createDispatcher } from './dispatcher';
import { EncodedEnvelope, JSONGLE_FRAME, type FrameOptions } from './frames';
import { announceDeparture } from './handlers/session-leave';
import { Session } from './session';
import type { Envelope } from '../protocol/envelope';
import type { HandlerContext, SignalingServer, SignalingSocket } from './types';

export interface Signaling {
  /** Tells every connection of this process that the server is going away (before it closes them). */
  announceShutdown(): void;
  /** Resolves when every closed connection has been cleaned out of the registry. */
  drain(): Promise<void>;
}

/**
 * Wires the JSONgle protocol onto a Socket.IO server: the gate, the session-hello, the dispatcher
 * and the clean-up of every connection however it ends.
 */
export function attachSignaling(
  io: SignalingServer,
  deps: {
    config: Readonly<Config>;
    registry: Registry;
    metrics: Metrics;
    logger: Logger;
    probeKey: string;
    about: Record<string, string>;
    /** Several processes share the registry (Redis): sessions elsewhere are reached through the adapter. */
    clustered: boolean;
  },
): Signaling {
  const { config, registry, metrics, logger, clustered } = deps;
  /** The marker a too-large packet is replaced with (see inspectPackets): unguessable, so no client can send it. */
  const oversizedEvent = `jsongle-oversized-${randomUUID()}`;
  /** This process's connections by session identity: the one look-up a delivery makes here. */
  const local = new Map<string, SignalingSocket>();
  // A recipient on this process is written to directly: no adapter, nothing published (and with
  // Redis, delivery within one process goes on through an outage). One elsewhere may be another
  // process's (through the adapter), or a held session's, whose messages are kept for its return.
  const deliverElsewhere = (message: Envelope) => {
    if (clustered) io.to(message.to).emit('jsongle', message);
    registry.bufferIfHeld(message.to, message, RESUME_BUFFER_LIMIT);
  };
  const send = (message: Envelope) => {
    const socket = local.get(message.to);
    if (!socket) return deliverElsewhere(message);
    const { to, ...addressless } = message;
    new EncodedEnvelope(addressless).writeTo(socket, to);
  };
  // One message to several members (a MUC relay) is serialized once for all of them.
  const sendEach = (recipients: readonly string[], message: Omit<Envelope, 'to'>) => {
    let encoded: EncodedEnvelope | undefined;
    for (const to of recipients) {
      const socket = local.get(to);
      if (socket) (encoded ??= new EncodedEnvelope(message)).writeTo(socket, to);
      else deliverElsewhere({ ...message, to });
    }
  };
  const context: HandlerContext = { config, registry, metrics, send, sendEach };
  const dispatch = createDispatcher(context);
  const gate = connectionGate(deps);
  const cleanups = new Set<Promise<void>>();

  io.use((socket, next) => gate.middleware(socket, next));
  // Members taken out by the registry itself (a dead process, a disconnect recorded late).
  registry.on('member-evicted', (room, member) => announceDeparture(context, room, member));

  /**
   * Looks at every packet where Socket.IO reads and writes it, before it is parsed:
   * - counts bytes once per packet, without serializing again (PROTOCOL.md §9);
   * - enforces maxMessageBytes (§6): an oversized packet is swapped for a small marker event, so
   *   it is never parsed and the connection survives;
   * - refuses binary attachments, which JSONgle has no use for: they would escape the size limit
   *   and the schema (a Buffer passes for an object). The connection gets 400002 and is closed.
   */
  function inspectPackets(socket: SignalingSocket, session: Session): void {
    socket.conn.on('packet', (packet: { type: string; data?: unknown }) => {
      // An empty message is Socket.IO's to refuse (it closes the connection as malformed).
      if (packet.type !== 'message' || packet.data === undefined) return;
      if (typeof packet.data !== 'string' || packet.data.startsWith('5') || packet.data.startsWith('6')) {
        if (session.closed) return;
        session.closed = true;
        metrics.errorSent(400002);
        send(sessionError(config.id, session.sid, 400002, 'Binary attachments are not part of JSONgle: send JSON only. Closing.'));
        session.log.info('binary attachment refused: disconnecting');
        // At once: Socket.IO's parser may otherwise close first (more than 10 attachments) with a
        // transport close, after which a client would reconnect by itself.
        socket.disconnect(true);
        return;
      }
      const isJsongle = packet.data.startsWith(JSONGLE_FRAME);
      // The envelope alone: without the frame `2["jsongle",` … `]` around it.
      const bytes = Math.max(0, Buffer.byteLength(packet.data) - (isJsongle ? JSONGLE_FRAME.length + 1 : 0));
      if (isJsongle) metrics.received(bytes);
      if (bytes > config.maxMessageBytes) {
        packet.data = `2${JSON.stringify([oversizedEvent, bytes])}`;
        session.log.info('oversized message dropped', { bytes });
      }
    });
    socket.conn.on('packetCreate', countSent);
  }
  /** One listener for every connection: it needs nothing of the connection's own. */
  function countSent(packet: { type: string; data?: unknown; options?: Partial<FrameOptions> }): void {
    if (packet.type !== 'message') return;
    // Our own frames come with their size; others (through the adapter, from another process) are measured.
    const counted = packet.options?.envelopeBytes;
    if (counted !== undefined) metrics.sent(counted);
    else if (typeof packet.data === 'string' && packet.data.startsWith(JSONGLE_FRAME)) {
      metrics.sent(Buffer.byteLength(packet.data) - JSONGLE_FRAME.length - 1);
    }
  }
  const refuse = (sid: string, code: 413001 | 429001, details: string, mid?: string) => {
    metrics.errorSent(code);
    send(sessionError(config.id, sid, code, details, mid));
  };

  /** Takes a session out of every room for good and tells the members that remain. */
  const closeSession = async (session: Session) => {
    const rooms = await registry.closeConnection(session.sid);
    if (session.member) for (const room of rooms) announceDeparture(context, room, session.member);
  };

  const grace = reconnectGrace({
    config,
    registry,
    send,
    closeSession,
    forget: (socket) => gate.forget(socket),
    track: (cleanup) => {
      cleanups.add(cleanup);
      void cleanup.finally(() => cleanups.delete(cleanup));
    },
    replace: (previousConnection, sid) => {
      // Wherever the first connection is (this process or another): told, then closed without an
      // automatic reconnect (an 'io server disconnect').
      io.to(previousConnection).emit(
        'jsongle',
        envelope(config.id, sid, { action: 'session-event', event: 'replaced', description: { replaced: new Date().toJSON() } }),
      );
      io.in(previousConnection).disconnectSockets(true);
    },
    restart: (session) => {
      send(helloRequest(config.id, session.sid, session.helloTransaction, { ...deps.about, connected: new Date().toJSON() }));
    },
  });

  io.on('connection', (socket) => {
    const { sessionId, probe, openedAt, resuming } = socket.data;
    const session = new Session(sessionId, socket.id, randomUUID(), logger, config.maxMessagesPerSecond);
    local.set(sessionId, socket);
    // With Redis, the session identity is also a Socket.IO room of one, which other processes emit to.
    if (clustered) void socket.join(sessionId);
    if (!probe) {
      metrics.connectionOpened();
      inspectPackets(socket, session);
    }
    if (logger.isDebugEnabled())
      logger.debug('connected', { module: 'signaling', session: sessionId, address: socket.data.address, probe });

    // onAny, not on('jsongle'): Socket.IO 4.8 defers named listeners by a tick and drops the
    // event if the socket closed meanwhile (socket.io#5213), so a session-terminate sent right
    // before a clean close would be lost. onAny listeners run before that deferral.
    socket.onAny((event: string, raw: unknown) => {
      // Too late: the clean-up is queued; handling this could put a closed connection in a room.
      if (session.closed) return;
      if (event === oversizedEvent) {
        refuse(sessionId, 413001, `Message too large: ${Number(raw)} bytes, the limit is ${config.maxMessageBytes}`);
        return;
      }
      if (event !== 'jsongle') return;
      if (!session.allowMessage()) {
        const mid = (raw as { id?: unknown } | null)?.id;
        refuse(
          sessionId,
          429001,
          `Too many messages: at most ${config.maxMessagesPerSecond} per second; this one was dropped`,
          typeof mid === 'string' ? mid : undefined,
        );
        return;
      }
      void session.enqueue(() => dispatch(session, raw));
    });

    session.helloTimer = setTimeout(() => {
      if (session.member) return;
      session.log.info('session-hello not completed in time: disconnecting', { helloTimeoutMs: config.helloTimeoutMs });
      socket.disconnect(true);
    }, config.helloTimeoutMs);

    socket.on('disconnect', (reason) => {
      clearTimeout(session.helloTimer);
      // A connection that took this session over is the session's socket now.
      if (local.get(sessionId) === socket) local.delete(sessionId);
      if (!probe) metrics.connectionClosed(openedAt);
      if (logger.isDebugEnabled())
        logger.debug('disconnected', { module: 'signaling', session: sessionId, reason, uid: session.member?.uid });
      // Packets read together with the close reach onAny a tick after this event: the clean-up
      // waits for them (setImmediate runs after those ticks), then is queued behind them, so that
      // neither a last message nor a seat is lost, and a join in flight leaves no ghost member.
      const cleanup = new Promise((resolve) => setImmediate(resolve))
        .then(() => {
          session.closed = true;
          return session.enqueue(() => grace.detach(socket, session, reason));
        })
        .catch((error: unknown) => {
          session.log.error('clean-up after disconnect failed', { error: String(error) });
        })
        .finally(() => cleanups.delete(cleanup));
      cleanups.add(cleanup);
    });

    if (resuming) {
      // Queued first: the client's own messages are handled once it has its session back.
      session
        .enqueue(() => grace.resume(socket, session, resuming))
        .catch((error: unknown) => {
          session.log.error('resume failed', { error: String(error) });
          socket.disconnect(true);
        });
    } else {
      send(helloRequest(config.id, sessionId, session.helloTransaction, { ...deps.about, connected: new Date(openedAt).toJSON() }));
    }
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
      grace.expireAll();
      // Each pass forgets what it waited for, so that it always moves on: a clean-up that settled
      // without leaving the set can never make this loop spin (a spin starves the timers, the
      // shutdown's own bound included). Clean-ups started meanwhile get the next pass.
      while (cleanups.size > 0) {
        const pending = [...cleanups];
        await Promise.allSettled(pending);
        for (const cleanup of pending) cleanups.delete(cleanup);
      }
    },
  };
}
