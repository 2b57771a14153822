import type { Config } from '../config';
import { envelope } from '../protocol/messages';
import { RegistryUnavailable, type DetachOutcome, type Registry } from '../registry/registry';
import type { Session } from './session';
import type { HandlerContext, SignalingSocket, SocketData } from './types';

/** Disconnect reasons of a connection that dropped rather than closed: its session is held. */
const HOLDABLE_REASONS: ReadonlySet<string> = new Set(['transport close', 'transport error', 'ping timeout']);
/** How soon a held session's expiry is asked again when the registry did not answer. */
const EXPIRY_RETRY_MS = 1000;
/** Messages kept for a held session: the newest, should it be away long. */
export const RESUME_BUFFER_LIMIT = 256;

/**
 * Reconnect grace (issue #9): a connection that drops keeps its session, seats and identity for
 * reconnectGraceMs; a new connection presenting the session's resume token takes them back with
 * what was sent meanwhile; after the grace the session ends as any other.
 */
export function reconnectGrace(deps: {
  config: Pick<Config, 'id' | 'reconnectGraceMs'>;
  registry: Registry;
  send: HandlerContext['send'];
  /** Takes a session out of every room for good and tells the members that remain. */
  closeSession: (session: Session) => Promise<void>;
  /** Gives back the connection's count for its address. */
  forget: (socket: SignalingSocket) => void;
  /** A clean-up in flight, for the server's close to wait for. */
  track: (cleanup: Promise<void>) => void;
  /** Tells the connection that held a session it lost to another, and closes it. */
  replace: (previousConnection: string, sid: string) => void;
  /** Starts a session afresh on this connection (sends the session-hello). */
  restart: (session: Session) => void;
}) {
  const { config, registry, closeSession } = deps;
  /** Held sessions, by connection: their grace timers, ended early by a shutdown. */
  const held = new Map<string, { timer: NodeJS.Timeout; expire: () => Promise<void> }>();

  return {
    /**
     * The connection ended: a dropped one keeps its session for reconnectGraceMs, a closed one
     * (or one another connection took over) does not.
     */
    async detach(socket: SignalingSocket, session: Session, reason: string): Promise<void> {
      deps.forget(socket);
      const graceMs = HOLDABLE_REASONS.has(reason) ? config.reconnectGraceMs : 0;
      let outcome: DetachOutcome = 'gone';
      try {
        if (session.member) outcome = await registry.detach(session.sid, session.connection, graceMs);
      } catch {
        // The registry cannot hold it now: close it, which the registry records once it is back.
      }
      if (outcome === 'gone') return closeSession(session);
      if (outcome === 'taken-over') return;
      session.log.debug('session held for a resume', { graceMs });
      const expire = async (): Promise<void> => {
        held.delete(session.connection);
        try {
          if (await registry.expire(session.sid, session.connection)) await closeSession(session);
        } catch (error) {
          if (!(error instanceof RegistryUnavailable)) throw error;
          // Whether it was resumed meanwhile is unknown until the registry answers: ask again.
          schedule(EXPIRY_RETRY_MS);
        }
      };
      const schedule = (delayMs: number) => {
        const timer = setTimeout(() => {
          deps.track(
            expire().catch((error: unknown) => {
              session.log.error('clean-up after the reconnect grace failed', { error: String(error) });
            }),
          );
        }, delayMs);
        held.set(session.connection, { timer, expire });
      };
      schedule(graceMs);
    },

    /** A connection presented a session's resume token: it takes the session, its seats and its buffer. */
    async resume(socket: SignalingSocket, session: Session, resuming: NonNullable<SocketData['resuming']>): Promise<void> {
      const buffered = await registry.resume(session.sid, session.connection);
      if (!buffered) {
        // The grace ran out between the token check and now: start afresh, counted again.
        session.member = undefined;
        await registry.openConnection(session.sid, Number.MAX_SAFE_INTEGER);
        deps.restart(session);
        return;
      }
      session.helloDone(resuming.member);
      session.log.debug('session resumed', { buffered: buffered.length, takeover: !resuming.held });
      socket.emit(
        'jsongle',
        envelope(config.id, session.sid, {
          action: 'session-event',
          event: 'resumed',
          description: { resume: resuming.token, member: resuming.member, buffered: buffered.length, resumed: new Date().toJSON() },
        }),
      );
      for (const message of buffered) socket.emit('jsongle', message);
      // A second connection with the token of a live session takes the seat over.
      if (!resuming.held && resuming.previousConnection !== session.connection) deps.replace(resuming.previousConnection, session.sid);
    },

    /** Shutting down: held sessions will not be resumed here, so their rooms are told now. */
    expireAll(): void {
      for (const { timer, expire } of held.values()) {
        clearTimeout(timer);
        deps.track(expire().catch(() => undefined));
      }
    },
  };
}
