import { createHmac } from 'node:crypto';
import type { Config } from '../../config';
import type { Description } from '../../protocol/envelope';
import { ProtocolError } from '../../protocol/errors';
import { iqResult } from '../../protocol/messages';
import type { Handler, HandlerContext } from '../types';

type TurnConfig = Pick<Config, 'turnSecret' | 'turnUris' | 'turnTtlSeconds'>;

/**
 * Time-limited TURN credentials in coturn's REST-API scheme (`use-auth-secret`): the username is
 * `<expiry unix time>:<uid>`, the password the base64 HMAC-SHA1 of it under the shared secret, so
 * coturn checks them without asking this server. Undefined when no secret is configured.
 */
export function iceServersFor(config: TurnConfig, uid: string, nowMs = Date.now()): Description | undefined {
  if (config.turnSecret === '') return undefined;
  const expiry = Math.floor(nowMs / 1000) + config.turnTtlSeconds;
  const username = `${expiry}:${uid}`;
  const credential = createHmac('sha1', config.turnSecret).update(username).digest('base64');
  return { iceServers: [{ urls: config.turnUris, username, credential }], expires: new Date(expiry * 1000).toJSON() };
}

/** `iq-set turn-credentials`: fresh credentials before the ones from the hello expire. */
export function turnCredentials({ config, send }: Pick<HandlerContext, 'config' | 'send'>): Handler {
  return async (session, message) => {
    const member = session.requireMember();
    const description = iceServersFor(config, member.uid);
    if (!description) throw new ProtocolError(405001, 'This server hands out no TURN credentials (turnSecret is not set)');
    send(iqResult(config.id, session.sid, 'turn-credentials', message.jsongle.transaction, description));
  };
}
