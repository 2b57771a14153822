import type { Redis } from 'ioredis';
import type { Logger } from '../observability/logger';
import type { Room } from './registry';

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
export class RoomCache {
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
