import { EventEmitter } from 'node:events';
import type { Member } from '../protocol/messages';
import { now } from '../protocol/messages';
import type { JoinLimits, JoinOutcome, LeaveOutcome, Registry, RegistryEvents, Room, RoomDetails, RoomKind } from './registry';

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
