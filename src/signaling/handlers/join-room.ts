import { descriptionParser, RoomRequestSchema } from '../../protocol/envelope';
import { ProtocolError } from '../../protocol/errors';
import { iqResult, memberEvent, now } from '../../protocol/messages';
import type { JoinLimits, RoomKind } from '../../registry/registry';
import type { Handler, HandlerContext } from '../types';

export const parseRoomRequest = descriptionParser(RoomRequestSchema);

export const namespaceOf = (kind: RoomKind) => (kind === 'p2p' ? 'room' : 'muc');

/** What session-join and muc-join share (PROTOCOL.md §4); they differ by kind and limits. */
export function joinRoom(
  { config, registry, send }: Pick<HandlerContext, 'config' | 'registry' | 'send'>,
  kind: RoomKind,
  query: string,
  limits: JoinLimits,
): Handler {
  return async (session, message) => {
    const member = session.requireMember();
    const { rid } = parseRoomRequest(message.jsongle.description, query);
    if (kind === 'p2p' && rid.startsWith(config.multiRoomPrefix)) {
      throw new ProtocolError(
        400001,
        `Bad parameters: room ids starting with ${config.multiRoomPrefix} are reserved for multi-user rooms (use muc-join)`,
      );
    }
    const outcome = await registry.join(rid, kind, member, limits);
    switch (outcome.status) {
      case 'full':
        throw new ProtocolError(403001, `Room ${rid} is full: it holds at most ${limits.maxMembers} members`);
      case 'wrong-kind':
        throw new ProtocolError(
          409002,
          `Room ${rid} is a ${kind === 'p2p' ? 'multi-user' : 'P2P'} room: join it with ${kind === 'p2p' ? 'muc-join' : 'session-join'}`,
        );
      case 'too-many-rooms':
        throw new ProtocolError(403003, `This connection is already in ${limits.maxRoomsOfKind} multi-user rooms: leave one first`);
    }
    const others = outcome.room.members.filter((m) => m.sid !== member.sid);
    send(iqResult(config.id, session.sid, query, message.jsongle.transaction, { rid, members: others, joined: now() }));
    // Joining again a room one is in changes nothing, so it tells no one (§4).
    if (outcome.status === 'joined') {
      for (const other of others) send(memberEvent(config.id, other.sid, namespaceOf(kind), 'joined', rid, member));
    }
  };
}
