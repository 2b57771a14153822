import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { ProtocolError } from './errors';

/**
 * The JSONgle contract (PROTOCOL.md §1, §6): envelope schemas, their static types and the
 * compiled validators. Compiled once at load; a check is a few hundred nanoseconds on a real envelope.
 */

const text = (maxLength: number) => Type.String({ maxLength });
const id = (maxLength: number) => Type.String({ minLength: 1, maxLength });
const optional = <T extends TSchema>(schema: T) => Type.Optional(schema);

export const DescriptionSchema = Type.Record(Type.String(), Type.Unknown());

export const JsongleSchema = Type.Object({
  action: id(64),
  query: optional(text(64)),
  transaction: optional(text(128)),
  namespace: optional(text(64)),
  description: optional(DescriptionSchema),
  sid: optional(text(256)),
  reason: optional(text(256)),
  initiator: optional(text(256)),
  responder: optional(text(256)),
  status: optional(text(64)),
  event: optional(text(64)),
});

/** What a client sends. `from` is never trusted (§1): the connection says who sent it. */
export const ClientEnvelopeSchema = Type.Object({
  id: id(128),
  from: optional(Type.Union([text(512), Type.Null()])),
  to: id(512),
  jsongle: JsongleSchema,
});

export type Jsongle = Static<typeof JsongleSchema>;
export type ClientEnvelope = Static<typeof ClientEnvelopeSchema>;
export type Description = Static<typeof DescriptionSchema>;

/**
 * What the server sends: always a full envelope. `from` is the server's id, a room id, or
 * `rid/uid` for a message relayed in a multi-user room; `to` is the recipient's session identity.
 */
export const ServerEnvelopeSchema = Type.Object({
  id: id(128),
  from: id(513),
  to: id(512),
  jsongle: JsongleSchema,
});

export type Envelope = Static<typeof ServerEnvelopeSchema>;

export const HelloResultSchema = Type.Object({ uid: id(256), dn: optional(text(256)) });
export const RoomRequestSchema = Type.Object({ rid: id(256) });
export const MetricsReportSchema = Type.Object({
  duration: optional(Type.Number({ minimum: 0, maximum: 7 * 24 * 3600 })),
  error: optional(text(64)),
});

/** The contract as a JSON Schema document (draft-07), served at GET /schema and kept in docs/schema.json. */
export function jsonSchemaDocument(version: string): Record<string, unknown> {
  // TypeBox schemas are JSON Schema already; serializing drops its symbol-keyed bookkeeping.
  const definitions = {
    ClientEnvelope: ClientEnvelopeSchema,
    ServerEnvelope: ServerEnvelopeSchema,
    SessionHelloResultDescription: HelloResultSchema,
    RoomRequestDescription: RoomRequestSchema,
    SessionMetricsDescription: MetricsReportSchema,
  };
  return JSON.parse(
    JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', title: 'JSONgle-Server envelopes', version, definitions }),
  ) as Record<string, unknown>;
}

const envelopeCheck = TypeCompiler.Compile(ClientEnvelopeSchema);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** How deep objects and arrays may nest in an envelope: an SDP or a candidate needs 4 or 5. */
export const MAX_DEPTH = 32;

/** Whether `value` nests deeper than `limit`; walks objects and arrays only, without recursion. */
function tooDeep(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop() as [unknown, number];
    if (typeof item !== 'object' || item === null) continue;
    if (depth >= limit) return true;
    for (const child of Object.values(item)) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return false;
}

/** Validates what arrived on a `jsongle` event; throws 400002 for a non-envelope, 400001 for a bad one. */
export function parseEnvelope(raw: unknown): ClientEnvelope {
  if (!isObject(raw) || !isObject(raw.jsongle) || typeof raw.jsongle.action !== 'string') {
    throw new ProtocolError(400002);
  }
  // Deep nesting would overflow the stack of Socket.IO's encoder when the message is relayed.
  if (tooDeep(raw, MAX_DEPTH)) throw new ProtocolError(400001, `Bad parameters: objects and arrays nest deeper than ${MAX_DEPTH} levels`);
  if (envelopeCheck.Check(raw)) return raw;
  const first = envelopeCheck.Errors(raw).First();
  throw new ProtocolError(400001, first ? `Bad parameters: ${first.path || '/'} ${first.message}` : undefined);
}

/** A validator for one message's `description`, used by the handlers. */
export function descriptionParser<T extends TSchema>(schema: T) {
  const check = TypeCompiler.Compile(schema);
  return (description: unknown, what: string): Static<T> => {
    if (description === undefined) throw new ProtocolError(400001, `Bad parameters for ${what}: description is missing`);
    if (check.Check(description)) return description;
    const first = check.Errors(description).First();
    const where = first ? `description${first.path.replace(/\//g, '.')} ${first.message}` : 'description is invalid';
    throw new ProtocolError(400001, `Bad parameters for ${what}: ${where}`);
  };
}
