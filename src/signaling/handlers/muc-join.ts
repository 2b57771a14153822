import type { Handler, HandlerContext } from '../types';
import { joinRoom } from './join-room';

/** Joins a multi-user room, within the per-room and per-connection limits (PROTOCOL.md §4). */
export function mucJoin(context: Pick<HandlerContext, 'config' | 'registry' | 'send'>): Handler {
  const { maxMembersPerMultiRoom, maxMultiRoomPerUser } = context.config;
  return joinRoom(context, 'muc', 'muc-join', { maxMembers: maxMembersPerMultiRoom, maxRoomsOfKind: maxMultiRoomPerUser });
}
