import { randomBytes } from 'node:crypto';
import { descriptionParser, HelloResultSchema } from '../../protocol/envelope';
import { ProtocolError } from '../../protocol/errors';
import { ack } from '../../protocol/messages';
import type { Handler, HandlerContext } from '../types';
import { iceServersFor } from './turn-credentials';

const parseHello = descriptionParser(HelloResultSchema);

/** The client's `iq-result` to the server's session-hello (PROTOCOL.md §3). */
export function sessionHello({ config, registry, send }: Pick<HandlerContext, 'config' | 'registry' | 'send'>): Handler {
  return async (session, message) => {
    const { transaction, description } = message.jsongle;
    const refuse = (error: Error): never => {
      send(ack(config.id, session.sid, transaction, false));
      throw error;
    };
    if (session.member) {
      refuse(new ProtocolError(409001, 'This connection already completed its session-hello: its identity cannot change'));
    }
    if (transaction !== session.helloTransaction) {
      refuse(
        new ProtocolError(
          400001,
          `Bad parameters: the transaction must be ${session.helloTransaction}, the one of the server's session-hello`,
        ),
      );
    }
    let hello;
    try {
      hello = parseHello(description, 'session-hello');
    } catch (error) {
      return refuse(error as ProtocolError);
    }
    const member = hello.dn === undefined ? { sid: session.sid, uid: hello.uid } : { sid: session.sid, uid: hello.uid, dn: hello.dn };
    // The token that lets a new connection take this session back after a drop (issue #9).
    const resume = randomBytes(24).toString('base64url');
    try {
      await registry.registerSession(session.sid, resume, member, session.connection);
    } catch (error) {
      return refuse(error as Error);
    }
    session.helloDone(member);
    // With TURN configured, the ack carries the first credentials too (see turn-credentials.ts).
    send(
      ack(config.id, session.sid, transaction, true, {
        resume,
        reconnectGraceMs: config.reconnectGraceMs,
        ...iceServersFor(config, hello.uid),
      }),
    );
  };
}
