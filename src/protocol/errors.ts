/** Every error code of PROTOCOL.md §7, with the sentence a developer reads when nothing more specific is said. */
export const ERROR_CODES = {
  400001: 'Bad parameters',
  400002: 'Not a JSONgle envelope: an object with a `jsongle` object holding an `action` string is expected',
  401001: 'Bad application token',
  403001: 'The room is full',
  403002: 'Complete the session-hello first',
  403003: 'Too many multi-user rooms for this connection',
  404001: 'Unknown iq query',
  404002: 'Not a member of that room',
  404003: 'No other member in the room',
  405001: 'Action not allowed here',
  409001: 'The session-hello is already completed',
  409002: 'The room is of the other kind',
  413001: 'Message too large',
  429001: 'Too many messages: slow down',
  429002: 'Too many connections from this address',
  500001: 'Internal server error: the message was dropped',
  503001: 'The server is full',
  503002: 'Shared state unreachable: try again',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** A refusal the client caused; the dispatcher turns it into an `iq-error` or a `session-error`. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    details?: string,
  ) {
    super(details ?? ERROR_CODES[code]);
  }
}
