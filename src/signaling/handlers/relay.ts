import type { Description } from '../../protocol/envelope';
import { ProtocolError } from '../../protocol/errors';
import { envelope, now } from '../../protocol/messages';
import type { Handler, HandlerContext } from '../types';

/** Call actions: relayed in P2P rooms only (PROTOCOL.md §5 rule 2). */
const CALL_ACTIONS = new Set([
  'session-propose',
  'session-info',
  'session-proceed',
  'session-initiate',
  'transport-info',
  'session-decline',
  'session-retract',
  'session-accept',
  'session-terminate',
]);

/** Messaging actions: relayed in both kinds of room. */
const MESSAGE_ACTIONS = new Set(['session-text', 'session-custom', 'session-event']);

export const RELAYED_ACTIONS: ReadonlySet<string> = new Set([...CALL_ACTIONS, ...MESSAGE_ACTIONS]);

/** Delivers a message addressed to a room to its other members (PROTOCOL.md §5). */
export function relay({
  config,
  registry,
  metrics,
  send,
  sendEach,
}: Pick<HandlerContext, 'config' | 'registry' | 'metrics' | 'send' | 'sendEach'>): Handler {
  return async (session, message) => {
    const sender = session.requireMember();
    const { action, namespace } = message.jsongle;
    const rid = message.to;
    const room = await registry.room(rid);
    const recipients: string[] = [];
    let isMember = false;
    for (const member of room?.members ?? []) {
      if (member.sid === session.sid) isMember = true;
      else recipients.push(member.sid);
    }
    if (!room || !isMember) {
      throw new ProtocolError(404002, `Not a member of room ${rid}: join it before sending ${action} to it`);
    }
    const isCall = CALL_ACTIONS.has(action);
    if (isCall && room.kind === 'muc') {
      throw new ProtocolError(405001, `${action} is a call action: calls take place in P2P rooms, not in multi-user room ${rid}`);
    }
    if (recipients.length === 0 && room.kind === 'p2p') {
      if (!isCall) throw new ProtocolError(404003, `No other member in room ${rid} to receive ${action}`);
      const { sid, initiator, responder } = message.jsongle;
      send(
        envelope(config.id, session.sid, {
          action: 'session-info',
          namespace,
          sid,
          initiator,
          responder,
          reason: 'unreachable',
          description: { ended: now() },
        }),
      );
      return;
    }

    const time = now();
    // The parsed message is this handler's own: it goes on as the sender wrote it (fields of its
    // own included, §5), with the server's times added; `from` is the room's word, not the
    // sender's (§1), and `to` each recipient's (an undefined `to` is left out of the JSON).
    const { jsongle } = message;
    const description: Description = { ...jsongle.description, relayed: time };
    description.sent ??= time;
    jsongle.description = description;
    const relayed = { ...message, to: undefined, from: room.kind === 'p2p' ? rid : `${rid}/${sender.uid}` };
    sendEach(recipients, relayed);
    metrics.relayedMessage(action);
    registry.countRelay(rid);

    if (action === 'session-propose') {
      const { sid, initiator, responder } = message.jsongle;
      send(
        envelope(config.id, session.sid, {
          action: 'session-info',
          namespace,
          sid,
          initiator,
          responder,
          reason: 'trying',
          description: { tried: time },
        }),
      );
    } else if (action === 'session-text' || action === 'session-custom') {
      send(
        envelope(config.id, session.sid, {
          action: 'session-event',
          namespace,
          event: 'ack',
          description: { mid: message.id, type: 'server-received', acknowledged: time },
        }),
      );
    }
  };
}
