import { randomUUID } from 'node:crypto';
import type { ExtendedError } from 'socket.io';
import type { Config } from '../config';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import { ERROR_CODES, type ErrorCode } from '../protocol/errors';
import type { Registry } from '../registry/registry';
import { sameSecret } from '../secret';
import type { SignalingSocket } from './types';

export interface ConnectionGate {
  middleware(socket: SignalingSocket, next: (error?: ExtendedError) => void): void;
  /** Gives back the connection's count for its address (its seat is the registry's to free). */
  forget(socket: SignalingSocket): void;
}

function refusal(message: string, code: ErrorCode): ExtendedError {
  const error: ExtendedError = new Error(message);
  error.data = { errorCode: code, errorDetails: ERROR_CODES[code] };
  return error;
}

/**
 * Accepts or refuses a connection before Socket.IO connects it (PROTOCOL.md §2): application
 * token, connections per address, then the global capacity. A refused socket is never counted.
 */
export function connectionGate(deps: {
  config: Pick<Config, 'appToken' | 'maxConcurrentUsers' | 'maxConnectionsPerAddress'>;
  registry: Registry;
  metrics: Metrics;
  logger: Logger;
  /** The self-check's secret: its connections skip the limits and the business metrics. */
  probeKey: string;
}): ConnectionGate {
  const { config, registry, metrics, logger, probeKey } = deps;
  const perAddress = new Map<string, number>();
  const log = logger.child({ module: 'gate' });

  const refuse = (socket: SignalingSocket, next: (error: ExtendedError) => void, reason: string, code: ErrorCode) => {
    metrics.connectionRefused(reason);
    log.info('connection refused', { reason, address: socket.handshake.address });
    next(refusal(reason, code));
  };

  const forget = (address: string) => {
    const count = (perAddress.get(address) ?? 1) - 1;
    if (count > 0) perAddress.set(address, count);
    else perAddress.delete(address);
  };

  return {
    middleware(socket, next) {
      const auth = socket.handshake.auth as Record<string, unknown>;
      const address = socket.handshake.address;
      const probe = typeof auth.probe === 'string' && sameSecret(auth.probe, probeKey);
      const sessionId = randomUUID();
      socket.data = { sessionId, probe, address, openedAt: Date.now() };
      if (probe) return next();

      const token = typeof auth.appToken === 'string' ? auth.appToken : '';
      if (config.appToken !== '' && !sameSecret(token, config.appToken)) return refuse(socket, next, 'unauthorized', 401001);
      const count = perAddress.get(address) ?? 0;
      if (count >= config.maxConnectionsPerAddress) return refuse(socket, next, 'too-many-connections', 429002);
      perAddress.set(address, count + 1);

      // A resume token names the session to take back (issue #9); an unknown one starts afresh.
      const resume = typeof auth.resume === 'string' && auth.resume.length <= 64 ? auth.resume : '';
      (resume === '' ? Promise.resolve(undefined) : registry.findSession(resume))
        .then((found) => {
          if (found) {
            socket.data.sessionId = found.sid;
            socket.data.resuming = { token: resume, member: found.member, previousConnection: found.connection, held: found.held };
          }
          // A resumed session is counted already: openConnection accepts it whatever the count.
          return registry.openConnection(socket.data.sessionId, config.maxConcurrentUsers);
        })
        .then(
          (accepted) => {
            if (!accepted) {
              forget(address);
              return refuse(socket, next, 'server-full', 503001);
            }
            // Socket.IO drops, without a disconnect event, a socket whose transport closed while
            // the middleware ran: give its seat back now or it would be held for ever.
            if (socket.conn.readyState !== 'open') {
              forget(address);
              if (!socket.data.resuming) void registry.closeConnection(socket.data.sessionId).catch(() => undefined);
              return next(refusal('closed', 500001));
            }
            next();
          },
          (error: unknown) => {
            forget(address);
            log.error('registry unreachable while accepting a connection', { error: String(error) });
            next(refusal('registry-unavailable', 503002));
          },
        );
    },

    forget(socket) {
      if (!socket.data.probe) forget(socket.data.address);
    },
  };
}
