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
import { now } from '../protocol/messages';

/**
 * The registry shared by several processes through one Redis (standalone, not Redis Cluster).
 * Every operation that checks a limit and changes the state is one Lua script, so two processes
 * racing for the last seat of a room cannot both win.
 *
 * Keys, under `prefix`:
 *   conns            hash  sid -> node id         connections counted against maxConcurrentUsers
 *   node:<id>        set   sids of that process   what to clean when the process dies
 *   alive:<id>       string, expires              the process's heartbeat
 *   nodes            set   node ids               whose heartbeats to watch
 *   room:<rid>       hash  kind, seq, m:<sid> -> "<seq>\t<since>\t<member json>"
 *   meta:<rid>       hash  created, msgs         for the admin view
 *   sess:<sid>       hash  token, member, conn, held   a session that may be resumed
 *   tok:<token>      string sid
 *   buf:<sid>        list  envelopes for a held session
 *   of:<sid>         hash  rid -> kind            rooms of a connection
 *   rooms            set   rids                   for counts
 *   held             set   sids                   held sessions (the `held` of sess:<sid>), for bufferIfHeld
 *
 * Every script that changes a room's members or a session's held state also publishes on the
 * channel `changes`: 'r<rid>' (a room's members changed), 'h<sid>' / 'u<sid>' (a session was held /
 * is no longer held). The processes keep what they read in step with it (see RoomCache below).
 */

// Takes `sid` out of room `rid`; returns nil when it was not there, else {kind, deleted, pairs, member}.
const LEAVE_FUNCTION = `
local function leave(prefix, rid, sid)
  local key = prefix .. 'room:' .. rid
  local field = 'm:' .. sid
  local member = redis.call('HGET', key, field)
  if not member then return nil end
  redis.call('HDEL', key, field)
  redis.call('HDEL', prefix .. 'of:' .. sid, rid)
  redis.call('PUBLISH', prefix .. 'changes', 'r' .. rid)
  local kind = redis.call('HGET', key, 'kind')
  if redis.call('HLEN', key) <= 2 then
    redis.call('DEL', key, prefix .. 'meta:' .. rid)
    redis.call('SREM', prefix .. 'rooms', rid)
    return {kind, '1', {}, member}
  end
  return {kind, '0', redis.call('HGETALL', key), member}
end
`;

const SCRIPTS = {
  // ARGV: prefix, sid, node, limit
  jsongleOpen: `
local prefix = ARGV[1]
local owner = redis.call('HGET', prefix .. 'conns', ARGV[2])
if owner then
  -- A resumed session, maybe on another process now: that process cleans it if it dies.
  redis.call('SREM', prefix .. 'node:' .. owner, ARGV[2])
  redis.call('HSET', prefix .. 'conns', ARGV[2], ARGV[3])
  redis.call('SADD', prefix .. 'node:' .. ARGV[3], ARGV[2])
  return 1
end
if redis.call('HLEN', prefix .. 'conns') >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', prefix .. 'conns', ARGV[2], ARGV[3])
redis.call('SADD', prefix .. 'node:' .. ARGV[3], ARGV[2])
return 1`,
  // ARGV: prefix, rid, kind, sid, member json, max members, max rooms of kind, node, now
  jsongleJoin: `
local prefix, rid, kind, sid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = prefix .. 'room:' .. rid
local current = redis.call('HGET', key, 'kind')
if current and current ~= kind then return {'wrong-kind'} end
if redis.call('HEXISTS', key, 'm:' .. sid) == 1 then return {'already-member', '0', redis.call('HGETALL', key)} end
local count = current and (redis.call('HLEN', key) - 2) or 0
if count >= tonumber(ARGV[6]) then return {'full'} end
local same = 0
for _, k in ipairs(redis.call('HVALS', prefix .. 'of:' .. sid)) do
  if k == kind then same = same + 1 end
end
if same >= tonumber(ARGV[7]) then return {'too-many-rooms'} end
local seq = redis.call('HINCRBY', key, 'seq', 1)
redis.call('HSET', key, 'kind', kind, 'm:' .. sid, seq .. '\\t' .. ARGV[9] .. '\\t' .. ARGV[5])
if not current then redis.call('HSET', prefix .. 'meta:' .. rid, 'created', ARGV[9], 'msgs', 0) end
redis.call('HSET', prefix .. 'of:' .. sid, rid, kind)
redis.call('SADD', prefix .. 'rooms', rid)
redis.call('SADD', prefix .. 'node:' .. ARGV[8], sid)
redis.call('PUBLISH', prefix .. 'changes', 'r' .. rid)
return {'joined', current and '0' or '1', redis.call('HGETALL', key)}`,
  // ARGV: prefix, rid, n. Only for a room that still exists: a late count must not recreate it.
  jsongleCount: `
if redis.call('EXISTS', ARGV[1] .. 'room:' .. ARGV[2]) == 1 then redis.call('HINCRBY', ARGV[1] .. 'meta:' .. ARGV[2], 'msgs', tonumber(ARGV[3])) end
return 1`,
  // ARGV: prefix, rid, sid
  jsongleLeave: `${LEAVE_FUNCTION}
local result = leave(ARGV[1], ARGV[2], ARGV[3])
if not result then return {'not-member'} end
return {'left', result[1], result[2], result[3], result[4]}`,
  // ARGV: prefix, sid, node. Returns {rid, kind, deleted, pairs, member} for each room left.
  jsongleClose: `${LEAVE_FUNCTION}
local prefix, sid = ARGV[1], ARGV[2]
local left = {}
for _, rid in ipairs(redis.call('HKEYS', prefix .. 'of:' .. sid)) do
  local result = leave(prefix, rid, sid)
  if result then table.insert(left, {rid, result[1], result[2], result[3], result[4]}) end
end
redis.call('DEL', prefix .. 'of:' .. sid)
local token = redis.call('HGET', prefix .. 'sess:' .. sid, 'token')
if token then redis.call('DEL', prefix .. 'tok:' .. token) end
redis.call('DEL', prefix .. 'sess:' .. sid, prefix .. 'buf:' .. sid)
if redis.call('SREM', prefix .. 'held', sid) == 1 then redis.call('PUBLISH', prefix .. 'changes', 'u' .. sid) end
redis.call('HDEL', prefix .. 'conns', sid)
redis.call('SREM', prefix .. 'node:' .. ARGV[3], sid)
return left`,
  // ARGV: prefix, sid, token, member json, connection
  jsongleRegister: `
redis.call('HSET', ARGV[1] .. 'sess:' .. ARGV[2], 'token', ARGV[3], 'member', ARGV[4], 'conn', ARGV[5], 'held', '0')
redis.call('SET', ARGV[1] .. 'tok:' .. ARGV[3], ARGV[2])
return 1`,
  // ARGV: prefix, token. Returns {sid, member, conn, held} or {}.
  jsongleFind: `
local sid = redis.call('GET', ARGV[1] .. 'tok:' .. ARGV[2])
if not sid then return {} end
local s = redis.call('HMGET', ARGV[1] .. 'sess:' .. sid, 'member', 'conn', 'held')
if not s[1] then return {} end
return {sid, s[1], s[2], s[3]}`,
  // ARGV: prefix, sid, connection, grace ms
  jsongleDetach: `
local key = ARGV[1] .. 'sess:' .. ARGV[2]
local conn = redis.call('HGET', key, 'conn')
if conn and conn ~= ARGV[3] then return 'taken-over' end
if not conn or tonumber(ARGV[4]) <= 0 then return 'gone' end
redis.call('HSET', key, 'held', '1')
redis.call('SADD', ARGV[1] .. 'held', ARGV[2])
redis.call('PUBLISH', ARGV[1] .. 'changes', 'h' .. ARGV[2])
return 'held'`,
  // ARGV: prefix, sid, connection
  jsongleExpire: `
local s = redis.call('HMGET', ARGV[1] .. 'sess:' .. ARGV[2], 'conn', 'held')
if s[1] == ARGV[3] and s[2] == '1' then return 1 end
return 0`,
  // ARGV: prefix, sid, connection. Returns the buffered envelopes, oldest first.
  jsongleResume: `
local key = ARGV[1] .. 'sess:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
redis.call('HSET', key, 'conn', ARGV[3], 'held', '0')
if redis.call('SREM', ARGV[1] .. 'held', ARGV[2]) == 1 then redis.call('PUBLISH', ARGV[1] .. 'changes', 'u' .. ARGV[2]) end
local buffered = redis.call('LRANGE', ARGV[1] .. 'buf:' .. ARGV[2], 0, -1)
redis.call('DEL', ARGV[1] .. 'buf:' .. ARGV[2])
return buffered`,
  // ARGV: prefix, sid, envelope json, limit
  jsongleBuffer: `
if redis.call('HGET', ARGV[1] .. 'sess:' .. ARGV[2], 'held') ~= '1' then return 0 end
redis.call('RPUSH', ARGV[1] .. 'buf:' .. ARGV[2], ARGV[3])
redis.call('LTRIM', ARGV[1] .. 'buf:' .. ARGV[2], -tonumber(ARGV[4]), -1)
return 1`,
} as const;

type ScriptName = keyof typeof SCRIPTS;

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

/** Rooms kept at most: beyond, the oldest read is forgotten (read again when next needed). */
const MAX_CACHED_ROOMS = 10_000;

/**
 * What this process knows of the shared state without asking Redis: the members of the rooms it
 * relays in, and which sessions are held. Both follow the `changes` channel, so they are used only
 * while this process is subscribed to it (`live`); in between (at start, through an outage, until
 * the subscription is confirmed after a reconnect) every read goes to Redis, as without a cache.
 *
 * A room is cached only from a read that no change of that room overtook: a change published while
 * the read was in flight may reach this process before or after the read's answer (they come on two
 * connections), so either way the read is not kept.
 *
 * Timing, compared with a Redis read per message: a process learns of another's change when the
 * channel delivers it, about half a Redis round trip after the change, instead of at its next read.
 * So a message that crosses a leave (or a join) by less than that goes by the room as it was, which
 * a read per message also did when it crossed by less than a round trip. What must never be missed
 * is ordered on one connection: the channel shares the subscriber connection of the Socket.IO
 * adapter, so a change is handled before any message another process published after it (a
 * 'joined' event, a relay from the joiner) is delivered here.
 */
class RoomCache {
  private readonly rooms = new Map<string, Room>();
  /** Reads in flight, by room: a change of the room deletes the entry, so the read is not kept. */
  private readonly reading = new Map<string, object>();
  /** Sessions held, by this process or another (the `held` set in Redis, and its announcements). */
  private held = new Set<string>();
  /** Held-state changes received while the set is being read again (replayed over what it read). */
  private heldChanges: string[] | undefined;
  private syncs = 0;
  private syncing = false;
  live = false;

  constructor(
    private readonly redis: Redis,
    private readonly subscriber: Redis,
    private readonly channel: string,
    private readonly heldKey: string,
    private readonly log: Logger,
  ) {}

  /** Until the next sync, reads and buffering go to Redis: what was cached may have been missed. */
  suspend(): void {
    this.syncs++;
    this.syncing = false;
    this.live = false;
    this.rooms.clear();
    this.reading.clear();
    this.heldChanges = undefined;
  }

  /**
   * Subscribes (again) to the changes, then reads the held sessions; live once both are done.
   * Called when either connection is ready again, and by the heartbeat until it succeeds.
   */
  async sync(): Promise<void> {
    this.suspend();
    // The other connection's 'ready' calls again.
    if (this.redis.status !== 'ready' || this.subscriber.status !== 'ready') return;
    const attempt = this.syncs;
    const changes: string[] = [];
    this.heldChanges = changes;
    this.syncing = true;
    try {
      // Answered once the subscription is in place (again: ioredis resubscribes on a reconnect).
      await this.subscriber.subscribe(this.channel);
      const held = await this.redis.smembers(this.heldKey);
      if (attempt !== this.syncs) return; // suspended meanwhile: a later sync takes over
      this.held = new Set(held);
      // Announcements that arrived before the set did may be newer than what it says.
      for (const change of changes) this.applyHeld(change);
      this.heldChanges = undefined;
      this.live = true;
    } catch (error) {
      this.log.warn('following registry changes failed: reading Redis for every message meanwhile', {
        error: error instanceof Error ? error.message : String(error),
      });
    } finally {
      if (attempt === this.syncs) this.syncing = false;
    }
  }

  /** Tries again if a sync failed. */
  retry(): void {
    if (!this.live && !this.syncing) void this.sync();
  }

  /** A message on the changes channel. */
  onChange(message: string): void {
    if (message.startsWith('r')) this.changed(message.slice(1));
    else {
      this.heldChanges?.push(message);
      this.applyHeld(message);
    }
  }

  private applyHeld(change: string): void {
    if (change.startsWith('h')) this.held.add(change.slice(1));
    else if (change.startsWith('u')) this.held.delete(change.slice(1));
  }

  /** Room `rid` changed (announced, or changed by this process, whose own announcement may come later). */
  changed(rid: string): void {
    this.rooms.delete(rid);
    this.reading.delete(rid);
  }

  get(rid: string): Room | undefined {
    return this.live ? this.rooms.get(rid) : undefined;
  }

  /** Starts a read of `rid`; what it returns is kept only if `keep(read, room)` is given the token back. */
  startRead(rid: string): object | undefined {
    if (!this.live) return undefined;
    const read = {};
    this.reading.set(rid, read);
    return read;
  }

  keep(rid: string, read: object | undefined, room: Room): void {
    if (read === undefined || this.reading.get(rid) !== read) return;
    this.reading.delete(rid);
    const oldest = this.rooms.size >= MAX_CACHED_ROOMS ? this.rooms.keys().next() : undefined;
    if (oldest?.done === false) this.rooms.delete(oldest.value);
    this.rooms.set(rid, room);
  }

  forgetRead(rid: string, read: object | undefined): void {
    if (read !== undefined && this.reading.get(rid) === read) this.reading.delete(rid);
  }

  /** False only when `sid` is known not to be held (when not live, nothing is known). */
  mayBeHeld(sid: string): boolean {
    return !this.live || this.held.has(sid);
  }
}

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
