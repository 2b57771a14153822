import type { ChildProcess } from 'node:child_process';

/**
 * Request/answer over a child process's IPC channel: the orchestrator drives the server under
 * test and the generator processes with `call`, the children answer with `serve`.
 */

interface Request {
  rpc: number;
  method: string;
  args: unknown;
}

interface Answer {
  answer: number;
  result?: unknown;
  error?: string;
}

const isRequest = (value: unknown): value is Request =>
  typeof value === 'object' && value !== null && typeof (value as Partial<Request>).rpc === 'number';
const isAnswer = (value: unknown): value is Answer =>
  typeof value === 'object' && value !== null && typeof (value as Partial<Answer>).answer === 'number';

export type Methods = Record<string, (args: never) => Promise<unknown>>;

/** In a child: answers the parent's calls; tells the parent it is ready with `ready`. */
export function serve(methods: Methods, ready: unknown): void {
  if (!process.send) throw new Error('started without an IPC channel: run it through bench/run.ts');
  process.on('message', (message: unknown) => {
    if (!isRequest(message)) return;
    const method = methods[message.method];
    const reply = (answer: Answer) => process.send?.(answer);
    if (!method) {
      reply({ answer: message.rpc, error: `no method ${message.method}` });
      return;
    }
    method(message.args as never).then(
      (result) => reply({ answer: message.rpc, result }),
      (error: unknown) => reply({ answer: message.rpc, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    );
  });
  // The parent going away (Ctrl-C, crash) must not leave load running.
  process.on('disconnect', () => process.exit(0));
  process.send({ ready });
}

/** In the parent: one child that answers calls. */
export class RpcChild {
  private next = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  readonly ready: Promise<unknown>;
  /** The last lines the child wrote, to explain a failure. */
  private readonly tail: string[] = [];

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const keep = (chunk: Buffer) => {
      this.tail.push(...chunk.toString().split('\n').filter(Boolean));
      this.tail.splice(0, Math.max(0, this.tail.length - 20));
    };
    // A send on a channel that just closed is reported here; the exit handler has already failed the calls.
    child.on('error', (error) => keep(Buffer.from(error.message)));
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.ready = new Promise((resolve, reject) => {
      child.on('message', (message: unknown) => {
        if (typeof message === 'object' && message !== null && 'ready' in message) resolve(message.ready);
        if (!isAnswer(message)) return;
        const waiter = this.pending.get(message.answer);
        this.pending.delete(message.answer);
        if (message.error !== undefined) waiter?.reject(new Error(`${name}: ${message.error}`));
        else waiter?.resolve(message.result);
      });
      child.on('exit', (code, signal) => {
        const error = new Error(`${name} exited (${String(code ?? signal)}): ${this.tail.join(' | ')}`);
        reject(error);
        for (const waiter of this.pending.values()) waiter.reject(error);
        this.pending.clear();
      });
    });
    // Only the ready promise's own failure handler may see an early exit; callers await it.
    this.ready.catch(() => undefined);
  }

  call<T>(method: string, args: unknown = {}, timeoutMs = 120_000): Promise<T> {
    const rpc = this.next++;
    if (!this.child.connected) return Promise.reject(new Error(`${this.name}: no longer running`));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rpc);
        reject(new Error(`${this.name}: ${method} took more than ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(rpc, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.child.send({ rpc, method, args } satisfies Request);
    });
  }

  /** Waits for the child to exit, killing it (by its own pid) if it does not within `ms`. */
  async stopped(ms: number): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
      }, ms);
      this.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
