import type { Server, Socket } from 'socket.io';
import type { Config } from '../config';
import type { ClientEnvelope, Envelope } from '../protocol/envelope';
import type { Metrics } from '../observability/metrics';
import type { Registry } from '../registry/registry';
import type { Member } from '../protocol/messages';
import type { Session } from './session';

export interface ClientToServerEvents {
  /** Typed `unknown` on purpose: nothing from a client is trusted before parseEnvelope. */
  jsongle: (message: unknown) => void;
}

export interface ServerToClientEvents {
  jsongle: (message: Envelope) => void;
}

export interface SocketData {
  sessionId: string;
  /** The server's own self-check (GET /tests): not counted in the business metrics. */
  probe: boolean;
  address: string;
  openedAt: number;
  /** Set when the connection presented the resume token of an existing session (issue #9). */
  resuming?: { token: string; member: Member; previousConnection: string; held: boolean };
}

export type SignalingServer = Server<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
export type SignalingSocket = Socket<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;

/** What every handler may use; each handler takes only what it reads. */
export interface HandlerContext {
  config: Readonly<Config>;
  registry: Registry;
  metrics: Metrics;
  /** Delivers an envelope to the connection whose session identity is `envelope.to`. */
  send: (envelope: Envelope) => void;
  /** Delivers one envelope to each of `recipients` (its `to` set to each in turn). */
  sendEach: (recipients: readonly string[], envelope: Omit<Envelope, 'to'>) => void;
}

export type Handler = (session: Session, message: ClientEnvelope) => Promise<void>;
