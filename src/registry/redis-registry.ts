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

export interface RedisRegistryOptions {
  /** This process's id: its connections are cleaned by the others if it dies. */
  nodeId: string;
  heartbeatMs: number;
  prefix?: string;
  logger: Logger;
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
    this.mirror.rooms.get(sid)?.delete(rid);
    const room: Room = { rid, kind: kind as RoomKind, members: membersOf(pairs as ScriptResult) };
    if (deleted === '1') this.emit('room-deleted', { rid, kind: room.kind });
    return { status: 'left', room };
  }

  async room(rid: string): Promise<Room | undefined> {
    let pairs: Record<string, string>;
    try {
      pairs = await this.redis.hgetall(`${this.prefix}room:${rid}`);
    } catch (error) {
      // Redis down: this process's own members of the room still reach each other (issue #6).
      const local = this.localRoom(rid);
      if (local) return local;
      throw new RegistryUnavailable(`Redis: ${String(error)}`);
    }
    const kind = pairs.kind as RoomKind | undefined;
    if (!kind) return undefined;
    return { rid, kind, members: membersOf(Object.entries(pairs).flat()) };
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
    const outcome = String(await this.run('jsongleDetach', sid, connection, graceMs)) as DetachOutcome;
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
