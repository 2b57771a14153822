import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import type { Logger } from '../observability/logger';
import type { Member } from '../protocol/messages';
import {
  RegistryUnavailable,
  type JoinLimits,
  type JoinOutcome,
  type LeaveOutcome,
  type Registry,
  type RegistryEvents,
  type Room,
  type DetachOutcome,
  type ResumableSession,
  type RoomDetails,
  type RoomKind,
} from './registry';
import type { Envelope } from '../protocol/envelope';
import { RoomCache } from './room-cache';
import { SCRIPTS, type ScriptName } from './redis-scripts';
import { now } from '../protocol/messages';

/**
 * The registry shared by several processes through one Redis (standalone, not Redis Cluster).
 * Every operation that checks a limit and changes the state is one Lua script, so two processes
 * racing for the last seat of a room cannot both win.
 *
 * Its keys and scripts are in redis-scripts.ts.
 */

const RELAY_COUNT_FLUSH_MS = 1000;
type ScriptResult = (string | number | ScriptResult)[];

interface StoredMember {
  seq: number;
  since: string;
  member: Member;
}

function parseMember(value: string): StoredMember {
  const [seq = '0', since = '', json = '{}'] = value.split('\t', 3);
  return { seq: Number(seq), since, member: JSON.parse(json) as Member };
}

/** Members from a room hash's HGETALL pairs, in the order they joined. */
function storedMembers(pairs: ScriptResult): StoredMember[] {
  const found: StoredMember[] = [];
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    if (String(pairs[i]).startsWith('m:')) found.push(parseMember(String(pairs[i + 1])));
  }
  return found.sort((a, b) => a.seq - b.seq);
}

const membersOf = (pairs: ScriptResult): Member[] => storedMembers(pairs).map(({ member }) => member);

export interface RedisRegistryOptions {
  /** This process's id: its connections are cleaned by the others if it dies. */
  nodeId: string;
  heartbeatMs: number;
  prefix?: string;
  logger: Logger;
  /**
   * A connection in subscriber mode (no ready check: see redis-setup.ts), best the Socket.IO
   * adapter's: with it, rooms and held sessions are followed instead of read from Redis for every
   * relayed message. Without it, they are read every time.
   */
  subscriber?: Redis;
}

export class RedisRegistry extends EventEmitter<RegistryEvents> implements Registry {
  private readonly prefix: string;
  private readonly log: Logger;
  private heartbeat: NodeJS.Timeout | undefined;
  /** Disconnects that happened while Redis was unreachable, recorded when it is back. */
  private readonly pendingCloses = new Set<string>();
  /** Relays counted for the admin view, not yet written (see countRelay). */
  private readonly relayCounts = new Map<string, number>();
  private countFlush: NodeJS.Timeout | undefined;
  /** Rooms and held sessions as the `changes` channel keeps them (when there is a subscriber). */
  private readonly cache: RoomCache | undefined;
  private readonly onChange = (channel: string, message: string) => {
    if (channel === `${this.prefix}changes`) this.cache?.onChange(message);
  };
  private readonly suspendCache = () => this.cache?.suspend();
  private readonly syncCache = () => void this.cache?.sync();
  /** This process's sessions whose detach is in flight: held, maybe, from the moment it was asked. */
  private readonly detaching = new Set<string>();
  /**
   * What this process has put in Redis for its own connections, so that it can put it back should
   * Redis restart empty: without it, an outage would outlive itself (every room forgotten).
   */
  private readonly mirror = {
    connections: new Set<string>(),
    sessions: new Map<string, { token: string; member: Member; connection: string; held: boolean }>(),
    rooms: new Map<string, Map<string, { kind: RoomKind; member: Member }>>(),
  };

  constructor(
    private readonly redis: Redis,
    private readonly options: RedisRegistryOptions,
  ) {
    super();
    this.prefix = options.prefix ?? 'jsongle:';
    this.log = options.logger.child({ module: 'redis-registry', node: options.nodeId });
    for (const [name, lua] of Object.entries(SCRIPTS)) redis.defineCommand(name, { numberOfKeys: 0, lua });
    redis.on('ready', () => {
      void this.restoreIfLost()
        .then(() => this.beat())
        .then(() => this.flushPendingCloses());
    });
    const { subscriber } = options;
    if (subscriber) {
      const cache = new RoomCache(redis, subscriber, `${this.prefix}changes`, `${this.prefix}held`, this.log);
      this.cache = cache;
      subscriber.on('message', this.onChange);
      // Whatever was announced while a connection was down is lost (and Redis may have restarted
      // empty): forget it all, and follow again once subscribed again.
      for (const client of [redis, subscriber]) client.on('close', this.suspendCache).on('ready', this.syncCache);
      if (subscriber.status === 'ready' && redis.status === 'ready') void cache.sync();
    }
  }

  /** Whether rooms and held sessions are followed on the changes channel now (else read every time). */
  get followsChanges(): boolean {
    return this.cache?.live === true;
  }

  /** Starts the heartbeat; other processes reap this one's connections if it stops for 3 beats. */
  start(): void {
    // Marks this process's data: its absence after a reconnect means Redis lost it.
    void this.redis.set(`${this.prefix}epoch:${this.options.nodeId}`, now()).catch(() => undefined);
    void this.beat();
    this.heartbeat = setInterval(() => void this.beat(), this.options.heartbeatMs);
    this.heartbeat.unref();
  }

  private async run(name: ScriptName, ...args: (string | number)[]): Promise<ScriptResult> {
    const command = (this.redis as unknown as Record<ScriptName, (...a: (string | number)[]) => Promise<ScriptResult>>)[name];
    try {
      return await command.call(this.redis, this.prefix, ...args);
    } catch (error) {
      throw new RegistryUnavailable(`Redis: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  async openConnection(sid: string, limit: number): Promise<boolean> {
    const opened = Number(await this.run('jsongleOpen', sid, this.options.nodeId, limit)) === 1;
    if (opened) this.mirror.connections.add(sid);
    return opened;
  }

  /** Room `rid` as far as this process's own connections make it up (from the mirror). */
  private localRoom(rid: string): Room | undefined {
    let kind: RoomKind | undefined;
    const members: Member[] = [];
    for (const rooms of this.mirror.rooms.values()) {
      const seat = rooms.get(rid);
      if (!seat) continue;
      kind = seat.kind;
      members.push(seat.member);
    }
    return kind && { rid, kind, members };
  }

  /** Forgets what this process held for `sid` (closed, or taken over by a connection elsewhere). */
  private unmirror(sid: string): void {
    this.mirror.connections.delete(sid);
    this.mirror.sessions.delete(sid);
    this.mirror.rooms.delete(sid);
  }

  async closeConnection(sid: string): Promise<Room[]> {
    try {
      const rooms = this.closedRooms(await this.run('jsongleClose', sid, this.options.nodeId)).map(({ room }) => room);
      this.unmirror(sid);
      return rooms;
    } catch (error) {
      // Recorded when Redis is back, and the rooms told then: no member outlives its connection.
      this.pendingCloses.add(sid);
      throw error;
    }
  }

  async join(rid: string, kind: RoomKind, member: Member, limits: JoinLimits): Promise<JoinOutcome> {
    const maxRooms = Number.isFinite(limits.maxRoomsOfKind) ? limits.maxRoomsOfKind : 2 ** 31;
    const [status, created, pairs] = await this.run(
      'jsongleJoin',
      rid,
      kind,
      member.sid,
      JSON.stringify(member),
      limits.maxMembers,
      maxRooms,
      this.options.nodeId,
      now(),
    );
    if (status === 'joined') this.cache?.changed(rid);
    if (status === 'joined' || status === 'already-member') {
      const room: Room = { rid, kind, members: membersOf(pairs as ScriptResult) };
      const mine = this.mirror.rooms.get(member.sid) ?? new Map<string, { kind: RoomKind; member: Member }>();
      this.mirror.rooms.set(member.sid, mine.set(rid, { kind, member }));
      if (status === 'already-member') return { status, room };
      if (created === '1') this.emit('room-created', { rid, kind });
      return { status, room, created: created === '1' };
    }
    return { status: status as 'full' | 'wrong-kind' | 'too-many-rooms' };
  }

  async leave(rid: string, sid: string): Promise<LeaveOutcome> {
    const [status, kind, deleted, pairs] = await this.run('jsongleLeave', rid, sid);
    if (status !== 'left') return { status: 'not-member' };
    this.cache?.changed(rid);
    this.mirror.rooms.get(sid)?.delete(rid);
    const room: Room = { rid, kind: kind as RoomKind, members: membersOf(pairs as ScriptResult) };
    if (deleted === '1') this.emit('room-deleted', { rid, kind: room.kind });
    return { status: 'left', room };
  }

  async room(rid: string): Promise<Room | undefined> {
    // Read for every relayed message: from the cache unless the room changed since it was read.
    const cached = this.cache?.get(rid);
    if (cached) return cached;
    const read = this.cache?.startRead(rid);
    let pairs: Record<string, string>;
    try {
      pairs = await this.redis.hgetall(`${this.prefix}room:${rid}`);
    } catch (error) {
      this.cache?.forgetRead(rid, read);
      // Redis down: this process's own members of the room still reach each other (issue #6).
      const local = this.localRoom(rid);
      if (local) return local;
      throw new RegistryUnavailable(`Redis: ${String(error)}`);
    }
    const kind = pairs.kind as RoomKind | undefined;
    let room: Room | undefined;
    try {
      room = kind && { rid, kind, members: membersOf(Object.entries(pairs).flat()) };
    } finally {
      // Kept if it was read whole (a corrupted member throws) and no change overtook the read.
      if (room) this.cache?.keep(rid, read, room);
      else this.cache?.forgetRead(rid, read);
    }
    return room;
  }

  async counts(): Promise<{ connections: number; rooms: number }> {
    const [connections, rooms] = await Promise.all([this.redis.hlen(`${this.prefix}conns`), this.redis.scard(`${this.prefix}rooms`)]);
    return { connections, rooms };
  }

  async registerSession(sid: string, token: string, member: Member, connection: string): Promise<void> {
    await this.run('jsongleRegister', sid, token, JSON.stringify(member), connection);
    this.mirror.sessions.set(sid, { token, member, connection, held: false });
  }

  async findSession(token: string): Promise<ResumableSession | undefined> {
    const [sid, member, connection, held] = (await this.run('jsongleFind', token)) as string[];
    if (sid === undefined || member === undefined || connection === undefined) return undefined;
    return { sid, member: JSON.parse(member) as Member, connection, held: held === '1' };
  }

  async detach(sid: string, connection: string, graceMs: number): Promise<DetachOutcome> {
    this.detaching.add(sid);
    let outcome: DetachOutcome;
    try {
      outcome = String(await this.run('jsongleDetach', sid, connection, graceMs)) as DetachOutcome;
    } finally {
      this.detaching.delete(sid);
    }
    if (outcome === 'taken-over') this.unmirror(sid);
    const session = this.mirror.sessions.get(sid);
    if (outcome === 'held' && session) session.held = true;
    return outcome;
  }

  async expire(sid: string, connection: string): Promise<boolean> {
    const expired = Number(await this.run('jsongleExpire', sid, connection)) === 1;
    if (!expired) this.unmirror(sid); // resumed, maybe by another process: not ours any more
    return expired;
  }

  async resume(sid: string, connection: string): Promise<Envelope[] | undefined> {
    const buffered = (await this.run('jsongleResume', sid, connection)) as string[] | number;
    if (typeof buffered === 'number') return undefined;
    const session = this.mirror.sessions.get(sid);
    if (session) Object.assign(session, { connection, held: false });
    return buffered.map((json) => JSON.parse(json) as Envelope);
  }

  bufferIfHeld(sid: string, envelope: Envelope, limit: number): void {
    // Called for every message to a session not connected here, which is nearly always one
    // connected to another process: the script (and the envelope's JSON) only for a session that
    // is or may be held. Which is:
    // - one of this process's, from the moment its detach is asked (so a buffer script sent after
    //   it runs after it in Redis, as before), until it is resumed or expires here (its mirror);
    // - one another process holds, from when its announcement (see RoomCache) arrives here, about
    //   half a Redis round trip after its detach ran. A message sent to it in between goes
    //   unbuffered, and so is lost with the connection: a window of a round trip, where there
    //   was one already from the moment its connection dropped until that detach ran (a
    //   setImmediate, the session's queue and a round trip at best; a ping timeout at worst);
    // - any, while this process does not follow the announcements (at start, after a reconnect).
    const mine = this.mirror.sessions.get(sid)?.held === true || this.detaching.has(sid);
    if (!mine && this.cache?.mayBeHeld(sid) === false) return;
    this.run('jsongleBuffer', sid, JSON.stringify(envelope), limit).catch(() => undefined);
  }

  countRelay(rid: string): void {
    // Added up here and written once a second: a script per relayed message cost Redis and this
    // process more than the relay itself.
    this.relayCounts.set(rid, (this.relayCounts.get(rid) ?? 0) + 1);
    this.countFlush ??= setTimeout(() => void this.flushRelayCounts(), RELAY_COUNT_FLUSH_MS).unref();
  }

  private async flushRelayCounts(): Promise<void> {
    this.countFlush = undefined;
    const counts = [...this.relayCounts];
    this.relayCounts.clear();
    await Promise.all(counts.map(([rid, n]) => this.run('jsongleCount', rid, n).catch(() => undefined)));
  }

  async details(rid?: string): Promise<RoomDetails[]> {
    clearTimeout(this.countFlush);
    await this.flushRelayCounts();
    const p = this.prefix;
    const rids = rid === undefined ? await this.redis.smembers(`${p}rooms`) : [rid];
    const pipeline = this.redis.pipeline();
    for (const each of rids) pipeline.hgetall(`${p}room:${each}`).hgetall(`${p}meta:${each}`);
    const replies = ((await pipeline.exec()) ?? []).map(([, value]) => value as Record<string, string>);
    const rooms: RoomDetails[] = [];
    rids.forEach((each, i) => {
      const room = replies[2 * i] ?? {};
      const meta = replies[2 * i + 1] ?? {};
      if (!room.kind) return;
      rooms.push({
        rid: each,
        kind: room.kind as RoomKind,
        created: meta.created ?? '',
        messages: Number(meta.msgs ?? 0),
        members: storedMembers(Object.entries(room).flat()).map(({ member, since }) => ({ ...member, since })),
      });
    });
    return rooms;
  }

  async health(): Promise<{ ready: true } | { ready: false; reason: string }> {
    if (this.redis.status !== 'ready') return { ready: false, reason: `redis ${this.redis.status}` };
    try {
      await this.redis.ping();
      return { ready: true };
    } catch (error) {
      return { ready: false, reason: `redis: ${error instanceof Error ? error.message : String(error)}` };
    }
  }

  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    clearTimeout(this.countFlush);
    for (const client of [this.redis, this.options.subscriber]) client?.off('close', this.suspendCache).off('ready', this.syncCache);
    this.options.subscriber?.off('message', this.onChange);
    this.cache?.suspend();
    const { nodeId } = this.options;
    if (this.redis.status === 'ready') {
      await this.redis
        .multi()
        .del(`${this.prefix}alive:${nodeId}`, `${this.prefix}epoch:${nodeId}`)
        .srem(`${this.prefix}nodes`, nodeId)
        .exec();
    }
    this.removeAllListeners();
  }

  private closedRooms(left: ScriptResult): { room: Room; member: Member }[] {
    return left.map((entry) => {
      const [rid, kind, deleted, pairs, member] = entry as [string, RoomKind, string, ScriptResult, string];
      this.cache?.changed(rid);
      if (deleted === '1') this.emit('room-deleted', { rid, kind });
      return { room: { rid, kind, members: membersOf(pairs) }, member: parseMember(member).member };
    });
  }

  private async flushPendingCloses(): Promise<void> {
    for (const sid of [...this.pendingCloses]) {
      try {
        for (const { room, member } of this.closedRooms(await this.run('jsongleClose', sid, this.options.nodeId))) {
          this.emit('member-evicted', room, member);
        }
        this.pendingCloses.delete(sid);
      } catch {
        return; // Still unreachable: the next 'ready' tries again.
      }
    }
  }

  /**
   * After a reconnect: if Redis lost this process's data (restarted without persistence, or a
   * failover to an empty replica), puts back its connections, sessions and seats, silently: for
   * the members nothing changed. A seat someone else took meanwhile is lost, and said so.
   */
  private async restoreIfLost(): Promise<void> {
    const epoch = `${this.prefix}epoch:${this.options.nodeId}`;
    try {
      if ((await this.redis.exists(epoch)) === 1) return;
      const { nodeId } = this.options;
      for (const sid of this.mirror.connections) await this.run('jsongleOpen', sid, nodeId, 2 ** 31);
      for (const [sid, { token, member, connection, held }] of this.mirror.sessions) {
        await this.run('jsongleRegister', sid, token, JSON.stringify(member), connection);
        if (held) await this.run('jsongleDetach', sid, connection, 1);
      }
      let restored = 0;
      for (const [sid, rooms] of this.mirror.rooms) {
        for (const [rid, { kind, member }] of rooms) {
          const [status] = await this.run(
            'jsongleJoin',
            rid,
            kind,
            sid,
            JSON.stringify(member),
            kind === 'p2p' ? 2 : 2 ** 31,
            2 ** 31,
            nodeId,
            now(),
          );
          this.cache?.changed(rid);
          if (status === 'joined' || status === 'already-member') restored++;
          else this.log.warn('seat lost while Redis was away', { rid, sid, status });
        }
      }
      await this.redis.set(epoch, now());
      if (this.mirror.connections.size > 0)
        this.log.warn("Redis had lost this process's state: restored", { connections: this.mirror.connections.size, seats: restored });
    } catch (error) {
      this.log.warn('restoring the state into Redis failed: retried at the next reconnect', { error: String(error) });
    }
  }

  /** Refreshes this process's heartbeat, then cleans up after any process whose heartbeat expired. */
  private async beat(): Promise<void> {
    const { nodeId, heartbeatMs } = this.options;
    const p = this.prefix;
    try {
      await this.redis
        .multi()
        .set(`${p}alive:${nodeId}`, '1', 'PX', heartbeatMs * 3)
        .sadd(`${p}nodes`, nodeId)
        .exec();
      this.cache?.retry();
      for (const other of await this.redis.smembers(`${p}nodes`)) {
        if (other === nodeId || (await this.redis.exists(`${p}alive:${other}`)) === 1) continue;
        // One process reaps a dead one; the claim expires in case the reaper dies too.
        if ((await this.redis.set(`${p}reaping:${other}`, nodeId, 'PX', heartbeatMs * 3, 'NX')) !== 'OK') continue;
        await this.reap(other);
      }
    } catch (error) {
      this.log.warn('heartbeat failed', { error: error instanceof Error ? error.message : String(error) });
    }
  }

  private async reap(deadNode: string): Promise<void> {
    const p = this.prefix;
    const sids = await this.redis.smembers(`${p}node:${deadNode}`);
    this.log.warn('process stopped beating: removing its connections from every room', { deadNode, connections: sids.length });
    for (const sid of sids) {
      for (const { room, member } of this.closedRooms(await this.run('jsongleClose', sid, deadNode))) {
        this.emit('member-evicted', room, member);
      }
    }
    await this.redis.multi().del(`${p}node:${deadNode}`).srem(`${p}nodes`, deadNode).del(`${p}reaping:${deadNode}`).exec();
  }
}
