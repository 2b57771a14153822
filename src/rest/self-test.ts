import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Router } from 'express';
import { io, type Socket } from 'socket.io-client';
import type { Config } from '../config';
import type { Envelope } from '../protocol/envelope';

const STEP_TIMEOUT_MS = 3000;

interface Check {
  name: string;
  ok: boolean;
  durationMs: number;
  error?: string;
}

/**
 * GET /tests: a real check of the signaling side (PROTOCOL.md §8). It connects to the server's own
 * wsPort over loopback as a client would, completes a hello and a join/leave in a room of its own.
 * Its connection carries `probeKey`, so it is kept out of the business metrics and the limits.
 */
export function selfTestRouter(deps: {
  config: Pick<Config, 'id' | 'appToken' | 'useHTTPS'>;
  probeKey: string;
  /** Rooms whose id starts with this are the self-check's own. */
  roomPrefix: string;
  wsPort: () => number;
}): Router {
  const { config, probeKey, roomPrefix } = deps;

  async function run(): Promise<Check[]> {
    const checks: Check[] = [];
    const url = `${config.useHTTPS ? 'https' : 'http'}://127.0.0.1:${deps.wsPort()}`;
    const socket = io(url, {
      transports: ['websocket'],
      auth: { appToken: config.appToken, probe: probeKey },
      // Loopback to this very process: the certificate may be issued for the public name only.
      rejectUnauthorized: false,
      reconnection: false,
      forceNew: true,
      timeout: STEP_TIMEOUT_MS,
    });
    const inbox = messages(socket);
    const step = async (name: string, work: () => Promise<void>) => {
      const started = performance.now();
      try {
        await work();
        checks.push({ name, ok: true, durationMs: Math.round(performance.now() - started) });
      } catch (error) {
        checks.push({
          name,
          ok: false,
          durationMs: Math.round(performance.now() - started),
          error: error instanceof Error ? error.message : String(error),
        });
        throw error;
      }
    };
    const request = (query: string, rid: string) => {
      const transaction = randomUUID();
      socket.emit('jsongle', {
        id: randomUUID(),
        from: null,
        to: config.id,
        jsongle: { action: 'iq-set', query, namespace: 'room', transaction, description: { rid } },
      });
      return inbox
        .next((m) => m.jsongle.transaction === transaction, query)
        .then((answer) => {
          if (answer.jsongle.action !== 'iq-result') throw new Error(`${query} answered ${JSON.stringify(answer.jsongle)}`);
        });
    };
    try {
      let hello: Envelope | undefined;
      await step('connect', async () => {
        hello = await inbox.next((m) => m.jsongle.query === 'session-hello', 'session-hello request');
      });
      await step('session-hello', async () => {
        const transaction = hello?.jsongle.transaction;
        socket.emit('jsongle', {
          id: randomUUID(),
          from: null,
          to: config.id,
          jsongle: { action: 'iq-result', query: 'session-hello', transaction, description: { uid: 'self-test' } },
        });
        const answer = await inbox.next((m) => m.jsongle.action === 'ack' && m.jsongle.transaction === transaction, 'session-hello ack');
        if (answer.jsongle.status !== 'success') {
          const error = await inbox.next((m) => m.jsongle.action === 'session-error', 'session-error');
          throw new Error(`session-hello was refused: ${JSON.stringify(error.jsongle.description)}`);
        }
      });
      const rid = `${roomPrefix}${randomUUID()}`;
      await step('session-join', () => request('session-join', rid));
      await step('session-leave', () => request('session-leave', rid));
    } catch {
      // The failed step is recorded in `checks`.
    } finally {
      socket.close();
    }
    return checks;
  }

  return Router().get('/tests', async (_req, res) => {
    const started = performance.now();
    const checks = await run();
    const ok = checks.length === 4 && checks.every((check) => check.ok);
    res.status(ok ? 200 : 503).json({ status: ok ? 'ok' : 'failed', checks, durationMs: Math.round(performance.now() - started) });
  });
}

/** Envelopes as they arrive, awaited one predicate at a time. */
function messages(socket: Socket) {
  const received: Envelope[] = [];
  const waiters = new Set<() => void>();
  let failure: Error | undefined;
  socket.on('jsongle', (message: Envelope) => {
    received.push(message);
    for (const wake of waiters) wake();
  });
  socket.on('connect_error', (error) => {
    failure = new Error(`connection refused: ${error.message}`);
    for (const wake of waiters) wake();
  });
  return {
    next(match: (message: Envelope) => boolean, what: string): Promise<Envelope> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const index = received.findIndex(match);
          if (index >= 0) {
            done();
            resolve(received.splice(index, 1)[0] as Envelope);
          } else if (failure) {
            done();
            reject(failure);
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${what} within ${STEP_TIMEOUT_MS} ms`));
        }, STEP_TIMEOUT_MS);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}
