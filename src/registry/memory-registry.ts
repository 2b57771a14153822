import { EventEmitter } from 'node:events';
import type { Member } from '../protocol/messages';
import { now } from '../protocol/messages';
import type { Envelope } from '../protocol/envelope';
import type {
  DetachOutcome,
  JoinLimits,
  JoinOutcome,
  LeaveOutcome,
  Registry,
  RegistryEvents,
  ResumableSession,
  Room,
  RoomDetails,
  RoomKind,
} from './registry';

/**
 * The embedded registry, for one process. Rooms are copy-on-write: a join or a leave builds a new
 * Room object, so the relay path reads a room without copying and never sees one half-changed.
 */
export class MemoryRegistry extends EventEmitter<RegistryEvents> implements Registry {
  private readonly rooms = new Map<string, Room>();
  /** Connections counted against maxConcurrentUsers. */
  private readonly connections = new Set<string>();
  /** Rooms of each connection, for disconnects and the per-connection MUC limit. */
  private readonly roomsOf = new Map<string, Set<string>>();
  /** Sessions that may be resumed, by session id and by token; buffers of held ones. */
  private readonly sessions = new Map<string, ResumableSession & { token: string; buffer: Envelope[] }>();
  private readonly tokens = new Map<string, string>();
  /** What the admin view shows beyond the members, by room. */
  private readonly activity = new Map<string, { created: string; messages: number; since: Map<string, string> }>();

  async openConnection(sid: string, limit: number): Promise<boolean> {
    if (this.connections.has(sid)) return true;
    if (this.connections.size >= limit) return false;
    this.connections.add(sid);
    return true;
  }

  async closeConnection(sid: string): Promise<Room[]> {
    this.connections.delete(sid);
    const session = this.sessions.get(sid);
    if (session) this.tokens.delete(session.token);
    this.sessions.delete(sid);
    const rids = this.roomsOf.get(sid);
    this.roomsOf.delete(sid);
    const left: Room[] = [];
    for (const rid of rids ?? []) {
      const outcome = this.remove(rid, sid);
      if (outcome.status === 'left') left.push(outcome.room);
    }
    return left;
  }

  async join(rid: string, kind: RoomKind, member: Member, limits: JoinLimits): Promise<JoinOutcome> {
    const room = this.rooms.get(rid);
    if (room && room.kind !== kind) return { status: 'wrong-kind' };
    if (room?.members.some((m) => m.sid === member.sid)) return { status: 'already-member', room };
    if (room && room.members.length >= limits.maxMembers) return { status: 'full' };
    const mine = this.roomsOf.get(member.sid) ?? new Set<string>();
    let sameKind = 0;
    for (const other of mine) if (this.rooms.get(other)?.kind === kind) sameKind++;
    if (sameKind >= limits.maxRoomsOfKind) return { status: 'too-many-rooms' };

    const joined: Room = { rid, kind, members: [...(room?.members ?? []), member] };
    this.rooms.set(rid, joined);
    mine.add(rid);
    this.roomsOf.set(member.sid, mine);
    const activity = this.activity.get(rid) ?? { created: now(), messages: 0, since: new Map<string, string>() };
    activity.since.set(member.sid, now());
    this.activity.set(rid, activity);
    if (!room) this.emit('room-created', { rid, kind });
    return { status: 'joined', room: joined, created: !room };
  }

  async leave(rid: string, sid: string): Promise<LeaveOutcome> {
    const outcome = this.remove(rid, sid);
    const mine = this.roomsOf.get(sid);
    mine?.delete(rid);
    if (mine?.size === 0) this.roomsOf.delete(sid);
    return outcome;
  }

  async room(rid: string): Promise<Room | undefined> {
    return this.rooms.get(rid);
  }

  async counts(): Promise<{ connections: number; rooms: number }> {
    return { connections: this.connections.size, rooms: this.rooms.size };
  }

  async registerSession(sid: string, token: string, member: Member, connection: string): Promise<void> {
    this.sessions.set(sid, { sid, member, connection, held: false, token, buffer: [] });
    this.tokens.set(token, sid);
  }

  async findSession(token: string): Promise<ResumableSession | undefined> {
    const session = this.sessions.get(this.tokens.get(token) ?? '');
    return session && { sid: session.sid, member: session.member, connection: session.connection, held: session.held };
  }

  async detach(sid: string, connection: string, graceMs: number): Promise<DetachOutcome> {
    const session = this.sessions.get(sid);
    if (session && session.connection !== connection) return 'taken-over';
    if (!session || graceMs <= 0) return 'gone';
    session.held = true;
    return 'held';
  }

  async expire(sid: string, connection: string): Promise<boolean> {
    const session = this.sessions.get(sid);
    return session?.held === true && session.connection === connection;
  }

  async resume(sid: string, connection: string): Promise<Envelope[] | undefined> {
    const session = this.sessions.get(sid);
    if (!session) return undefined;
    session.connection = connection;
    session.held = false;
    return session.buffer.splice(0);
  }

  bufferIfHeld(sid: string, envelope: Envelope, limit: number): void {
    const session = this.sessions.get(sid);
    if (!session?.held) return;
    session.buffer.push(envelope);
    // The oldest go first: what matters on return is the latest state of the call.
    if (session.buffer.length > limit) session.buffer.shift();
  }

  countRelay(rid: string): void {
    const activity = this.activity.get(rid);
    if (activity) activity.messages++;
  }

  async details(rid?: string): Promise<RoomDetails[]> {
    const rooms = rid === undefined ? [...this.rooms.values()] : [this.rooms.get(rid)].filter((room) => room !== undefined);
    return rooms.map((room) => {
      const activity = this.activity.get(room.rid);
      return {
        rid: room.rid,
        kind: room.kind,
        created: activity?.created ?? '',
        messages: activity?.messages ?? 0,
        members: room.members.map((member) => ({ ...member, since: activity?.since.get(member.sid) ?? '' })),
      };
    });
  }

  async health(): Promise<{ ready: true }> {
    return { ready: true };
  }

  async close(): Promise<void> {
    this.removeAllListeners();
  }

  private remove(rid: string, sid: string): LeaveOutcome {
    const room = this.rooms.get(rid);
    if (!room?.members.some((m) => m.sid === sid)) return { status: 'not-member' };
    const after: Room = { rid, kind: room.kind, members: room.members.filter((m) => m.sid !== sid) };
    this.activity.get(rid)?.since.delete(sid);
    if (after.members.length === 0) {
      this.rooms.delete(rid);
      this.activity.delete(rid);
      this.emit('room-deleted', { rid, kind: room.kind });
    } else {
      this.rooms.set(rid, after);
    }
    return { status: 'left', room: after };
  }
}
