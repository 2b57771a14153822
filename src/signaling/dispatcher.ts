import { parseEnvelope, type ClientEnvelope } from '../protocol/envelope';
import { ProtocolError } from '../protocol/errors';
import { RegistryUnavailable } from '../registry/registry';
import { iqError, sessionError } from '../protocol/messages';
import { mucJoin } from './handlers/muc-join';
import { relay, RELAYED_ACTIONS } from './handlers/relay';
import { sessionHello } from './handlers/session-hello';
import { sessionJoin } from './handlers/session-join';
import { sessionLeave } from './handlers/session-leave';
import { sessionMetrics } from './handlers/session-metrics';
import { turnCredentials } from './handlers/turn-credentials';
import type { Session } from './session';
import type { Handler, HandlerContext } from './types';

/**
 * Routes a connection's `jsongle` events to their handler, and is the one place where a refusal
 * becomes an `iq-error` (for iq-get/iq-set) or a `session-error` (for everything else).
 */
export function createDispatcher(context: HandlerContext): (session: Session, raw: unknown) => Promise<void> {
  const { config, metrics, send } = context;
  const hello = sessionHello(context);
  const queries: ReadonlyMap<string, Handler> = new Map([
    ['session-join', sessionJoin(context)],
    ['muc-join', mucJoin(context)],
    ['session-leave', sessionLeave(context)],
    ['turn-credentials', turnCredentials(context)],
  ]);
  const relayToRoom = relay(context);
  const reportMetrics = sessionMetrics(context);

  const isHello = ({ jsongle }: ClientEnvelope) => jsongle.action === 'iq-result' && jsongle.query === 'session-hello';
  const isIq = ({ jsongle }: ClientEnvelope) => jsongle.action === 'iq-set' || jsongle.action === 'iq-get';

  function route(message: ClientEnvelope): Handler {
    const { action, query } = message.jsongle;
    if (isHello(message)) return hello;
    if (isIq(message)) {
      const handler = queries.get(query ?? '');
      if (!handler)
        throw new ProtocolError(404001, `Unknown iq query ${JSON.stringify(query)}: this server answers ${[...queries.keys()].join(', ')}`);
      return handler;
    }
    if (RELAYED_ACTIONS.has(action)) return relayToRoom;
    if (action === 'session-metrics') return reportMetrics;
    throw new ProtocolError(405001, `Action ${JSON.stringify(action)} is not one this server handles or relays`);
  }

  function refuse(session: Session, error: ProtocolError, message: ClientEnvelope | undefined): void {
    metrics.errorSent(error.code);
    // §3.4: before the hello, the refusal is always a session-error.
    if (message && isIq(message) && error.code !== 403002) {
      send(iqError(config.id, session.sid, message.jsongle.query, message.jsongle.transaction, error.code, error.message));
    } else {
      send(sessionError(config.id, session.sid, error.code, error.message, message?.id));
    }
  }

  return async (session, raw) => {
    let message: ClientEnvelope | undefined;
    try {
      message = parseEnvelope(raw);
      if (!session.member && !isHello(message)) throw new ProtocolError(403002);
      await route(message)(session, message);
    } catch (error) {
      if (error instanceof ProtocolError) {
        session.log.debug('message refused', { code: error.code, details: error.message, mid: message?.id });
        refuse(session, error, message);
      } else if (error instanceof RegistryUnavailable) {
        session.log.warn('registry unavailable: message refused', { mid: message?.id, error: error.message });
        refuse(session, new ProtocolError(503002), message);
      } else {
        // A bug, not the client's fault: the message is dropped, the connection and the process stay up.
        session.log.error('handler failed', {
          mid: message?.id,
          action: message?.jsongle.action,
          error: error instanceof Error ? error.stack : String(error),
        });
        refuse(session, new ProtocolError(500001), message);
      }
    }
  };
}
