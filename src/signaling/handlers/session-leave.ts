import { ProtocolError } from '../../protocol/errors';
import { iqResult, memberEvent, type Member } from '../../protocol/messages';
import type { Room } from '../../registry/registry';
import type { Handler, HandlerContext } from '../types';
import { namespaceOf, parseRoomRequest } from './join-room';

/** Tells everyone still in `room` that `member` left: after a leave and after a disconnect (§4). */
export function announceDeparture({ config, send }: Pick<HandlerContext, 'config' | 'send'>, room: Room, member: Member): void {
  for (const other of room.members) send(memberEvent(config.id, other.sid, namespaceOf(room.kind), 'left', room.rid, member));
}

export function sessionLeave(context: Pick<HandlerContext, 'config' | 'registry' | 'send'>): Handler {
  const { config, registry, send } = context;
  return async (session, message) => {
    const member = session.requireMember();
    const { rid } = parseRoomRequest(message.jsongle.description, 'session-leave');
    const outcome = await registry.leave(rid, session.sid);
    if (outcome.status === 'not-member') throw new ProtocolError(404002, `Not a member of room ${rid}`);
    send(iqResult(config.id, session.sid, 'session-leave', message.jsongle.transaction, { rid }));
    announceDeparture(context, outcome.room, member);
  };
}
