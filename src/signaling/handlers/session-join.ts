import type { Handler, HandlerContext } from '../types';
import { joinRoom } from './join-room';

/** Joins a P2P room: two members at most (PROTOCOL.md §4). */
export function sessionJoin(context: Pick<HandlerContext, 'config' | 'registry' | 'send'>): Handler {
  return joinRoom(context, 'p2p', 'session-join', { maxMembers: 2, maxRoomsOfKind: Number.POSITIVE_INFINITY });
}
