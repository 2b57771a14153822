import type { EventEmitter } from 'node:events';
import type { Envelope } from '../protocol/envelope';
import type { Member } from '../protocol/messages';

/**
 * Who is connected and who is in which room: the only shared mutable state of the server.
 * Async from the start so that the in-memory and the Redis-backed registries are interchangeable;
 * every capacity check is part of the single operation that changes the state.
 */

export type RoomKind = 'p2p' | 'muc';

export interface Room {
  readonly rid: string;
  readonly kind: RoomKind;
  readonly members: readonly Member[];
}

export interface JoinLimits {
  /** Members the room may hold (2 for P2P rooms). */
  maxMembers: number;
  /** Rooms of this kind one connection may be in at once. */
  maxRoomsOfKind: number;
}

/** What the admin view shows of a room (issue #9): members with the time they joined, activity. */
export interface RoomDetails {
  rid: string;
  kind: RoomKind;
  created: string;
  /** Messages relayed in the room since it was created. */
  messages: number;
  members: (Member & { since: string })[];
}

export type JoinOutcome =
  /** `room` is the room after the join; `created` when the joiner was its first member. */
  | { status: 'joined'; room: Room; created: boolean }
  | { status: 'already-member'; room: Room }
  | { status: 'full' | 'wrong-kind' | 'too-many-rooms' };

export type LeaveOutcome =
  /** `room` is the room after the leave (no members: it was deleted). */
  { status: 'left'; room: Room } | { status: 'not-member' };

export interface RegistryEvents {
  'room-created': [room: { rid: string; kind: RoomKind }];
  'room-deleted': [room: { rid: string; kind: RoomKind }];
  /**
   * A member was taken out of a room without its own connection asking: its process died, or its
   * disconnect could only be recorded later. `room` is as it is after; its members must be told.
   */
  'member-evicted': [room: Room, member: Member];
}

/** A session that a new connection may take back with its resume token (issue #9). */
export interface ResumableSession {
  sid: string;
  member: Member;
  /** The connection (Socket.IO socket id) that owns it now; held: none is attached. */
  connection: string;
  held: boolean;
}

/** What became of a session when its connection ended. */
export type DetachOutcome = 'held' | 'gone' | 'taken-over';

/** The shared state cannot be read or changed now (Redis down): the client may try again (503002). */
export class RegistryUnavailable extends Error {}

export interface Registry extends Pick<EventEmitter<RegistryEvents>, 'on' | 'off'> {
  /** Counts a new connection unless `limit` connections are open already. */
  openConnection(sid: string, limit: number): Promise<boolean>;
  /** Forgets a connection (and its session) and takes it out of every room; returns those rooms as they are after. */
  closeConnection(sid: string): Promise<Room[]>;
  join(rid: string, kind: RoomKind, member: Member, limits: JoinLimits): Promise<JoinOutcome>;
  leave(rid: string, sid: string): Promise<LeaveOutcome>;
  room(rid: string): Promise<Room | undefined>;
  counts(): Promise<{ connections: number; rooms: number }>;
  /** Counts a relayed message for the admin view; best effort, never awaited on the relay path. */
  countRelay(rid: string): void;
  /** Every room, or one, with its details (admin view; not for the hot path). */
  details(rid?: string): Promise<RoomDetails[]>;

  // Reconnect grace (issue #9). A session completed its hello on `connection`; when that connection
  // drops, its seats are held for a while, messages to it are buffered, and a new connection that
  // presents the session's resume token takes all of it back.

  /** Records a session after its hello, with the token that resumes it. */
  registerSession(sid: string, token: string, member: Member, connection: string): Promise<void>;
  /** The session a token resumes, as it is now; undefined if none. */
  findSession(token: string): Promise<ResumableSession | undefined>;
  /**
   * `connection` ended. If another connection took the session over: 'taken-over' (nothing to
   * clean). Else with `graceMs` > 0: 'held' (seats kept, messages buffered). Else 'gone': the
   * caller cleans up with closeConnection.
   */
  detach(sid: string, connection: string, graceMs: number): Promise<DetachOutcome>;
  /** After the grace: true if `connection` still holds the session (the caller cleans up). */
  expire(sid: string, connection: string): Promise<boolean>;
  /**
   * `connection` owns the session from now on; returns what was buffered for it, in order, or
   * undefined when the session no longer exists (its grace ran out meanwhile).
   */
  resume(sid: string, connection: string): Promise<Envelope[] | undefined>;
  /** Keeps `envelope` for a held session (at most `limit`); does nothing for any other. Best effort. */
  bufferIfHeld(sid: string, envelope: Envelope, limit: number): void;

  /** Readiness: whether new sessions can be served now. */
  health(): Promise<{ ready: true } | { ready: false; reason: string }>;
  close(): Promise<void>;
}
