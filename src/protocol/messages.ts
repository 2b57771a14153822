import { randomUUID } from 'node:crypto';
import type { Description, Envelope, Jsongle } from './envelope';
import { ERROR_CODES, type ErrorCode } from './errors';

/** The server's own envelopes (PROTOCOL.md §1): a fresh id, `from` = the server's id. */

let nowMs = 0;
let nowIso = '';
/**
 * The time as ISO 8601, as `new Date().toJSON()`. Formatting a date was the single most expensive
 * call of a relay, and a busy server asks many times per millisecond: the string is kept for that.
 */
export function now(): string {
  const ms = Date.now();
  if (ms !== nowMs) {
    nowMs = ms;
    nowIso = new Date(ms).toJSON();
  }
  return nowIso;
}

export interface Member {
  /** Session identity of the connection: two devices of one user differ here. */
  sid: string;
  uid: string;
  dn?: string;
}

export type RoomNamespace = 'room' | 'muc';

export function envelope(from: string, to: string, jsongle: Jsongle): Envelope {
  return { id: randomUUID(), from, to, jsongle };
}

export function helloRequest(from: string, to: string, transaction: string, about: Description): Envelope {
  return envelope(from, to, { action: 'iq-get', query: 'session-hello', transaction, description: about });
}

export function ack(from: string, to: string, transaction: string | undefined, success: boolean, description?: Description): Envelope {
  return envelope(from, to, { action: 'ack', status: success ? 'success' : 'failed', transaction, description });
}

export function iqResult(from: string, to: string, query: string, transaction: string | undefined, description: Description): Envelope {
  return envelope(from, to, { action: 'iq-result', query, transaction, description });
}

export function errorDescription(code: ErrorCode, details?: string): Description {
  return { errorCode: code, errorDetails: details ?? ERROR_CODES[code] };
}

export function iqError(
  from: string,
  to: string,
  query: string | undefined,
  transaction: string | undefined,
  code: ErrorCode,
  details?: string,
): Envelope {
  return envelope(from, to, { action: 'iq-error', query, transaction, description: errorDescription(code, details) });
}

/** `mid` names the offending message, when there was one to name. */
export function sessionError(from: string, to: string, code: ErrorCode, details?: string, mid?: string): Envelope {
  const description = errorDescription(code, details);
  if (mid !== undefined) description.mid = mid;
  return envelope(from, to, { action: 'session-error', description });
}

export function memberEvent(
  from: string,
  to: string,
  namespace: RoomNamespace,
  event: 'joined' | 'left',
  rid: string,
  member: Member,
): Envelope {
  return envelope(from, to, { action: 'session-event', namespace, event, description: { rid, member } });
}
