import type { Logger } from '../observability/logger';
import type { Member } from '../protocol/messages';
import { ProtocolError } from '../protocol/errors';

/** One connection's protocol state. */
export class Session {
  /** Set by a successful session-hello (PROTOCOL.md §3); never changes after. */
  member: Member | undefined;
  /** Set once the disconnect clean-up is queued: later messages are dropped. */
  closed = false;
  /** Disconnects the connection if its session-hello is not done in time; cleared once it is. */
  helloTimer: NodeJS.Timeout | undefined;
  private queue: Promise<void> = Promise.resolve();
  private tokens: number;
  private refilledAt = Date.now();
  private childLogger: Logger | undefined;

  constructor(
    readonly sid: string,
    /** The Socket.IO socket id of this connection: a resumed session keeps `sid`, not this. */
    readonly connection: string,
    /** The transaction of the server's session-hello, which the client's answer must repeat; '' once done. */
    public helloTransaction: string,
    private readonly logger: Logger,
    private readonly messagesPerSecond: number,
  ) {
    this.tokens = this.burst;
  }

  /** This session's logger, made on first use: most connections never log a line of their own. */
  get log(): Logger {
    this.childLogger ??= this.logger.child({ module: 'signaling', session: this.sid });
    return this.childLogger;
  }

  /** The session-hello is done: its deadline and its transaction go (memory held by every connection). */
  helloDone(member: Member): void {
    this.member = member;
    clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    this.helloTransaction = '';
  }

  /** §6: a burst of twice the per-second rate, refilled continuously. */
  private get burst(): number {
    return this.messagesPerSecond * 2;
  }

  /** Takes one message from the connection's budget; false when it is spent. */
  allowMessage(): boolean {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) * this.messagesPerSecond) / 1000);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /**
   * Runs `work` after everything queued before it: a connection's messages are handled one at a
   * time, in order, even with a registry whose calls take network round trips (a join followed at
   * once by a relay must see the join done), and its disconnect clean-up comes after them all.
   */
  enqueue(work: () => Promise<void>): Promise<void> {
    const run = this.queue.then(work);
    // The caller handles a failure of `work`; the queue itself must keep going.
    this.queue = run.catch(() => undefined);
    return run;
  }

  requireMember(): Member {
    if (!this.member) throw new ProtocolError(403002);
    return this.member;
  }
}
