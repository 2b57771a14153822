import type { Envelope } from '../protocol/envelope';
import type { SignalingSocket } from './types';

/** How a `jsongle` event of the default namespace starts on the wire (a Socket.IO EVENT packet). */
export const JSONGLE_FRAME = '2["jsongle",';

/** Engine.IO's packet type of a message: it goes in front of the Socket.IO packet on the wire. */
const ENGINE_MESSAGE = '4';

/** Options engine.io passes along with a packet (read back by signaling.ts's byte count). */
export interface FrameOptions {
  /**
   * The WebSocket frame, already built: engine.io writes it as it is (the option Socket.IO's own
   * broadcasts use), over polling it sends the packet's string instead.
   */
  wsPreEncodedFrame: [Buffer, Buffer];
  /** The envelope's size in bytes, for sent_total (PROTOCOL.md §9). */
  envelopeBytes: number;
  /** permessage-deflate is off (Socket.IO's default), which a pre-built frame needs. */
  compress: false;
}

/**
 * The header of an unmasked, final WebSocket text frame of `length` bytes (RFC 6455 §5.2), in a
 * buffer with `room` bytes left after it for the start of the payload.
 */
function frameHeader(length: number, room: number): { header: Buffer; offset: number } {
  const size = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const header = Buffer.allocUnsafe(size + room);
  header[0] = 0x81;
  if (size === 2) header[1] = length;
  else if (size === 4) {
    header[1] = 126;
    header.writeUInt16BE(length, 2);
  } else {
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  return { header, offset: size };
}

/** What goes before the envelope in a frame's payload: the Engine.IO and Socket.IO packet prefixes. */
const PAYLOAD_PREFIX = ENGINE_MESSAGE + JSONGLE_FRAME;

/**
 * A server envelope serialized once, for one recipient or many. Only `to` differs between
 * recipients, so it goes last: every recipient's frame is the same first part (the frame header,
 * the packet prefixes and the envelope up to its closing brace, turned into bytes once) and its
 * own few bytes of `,"to":"<sid>"}]`. Socket.IO's emit would encode, serialize and frame the
 * whole envelope again for each recipient, after walking it for binary data JSONgle never has.
 */
export class EncodedEnvelope {
  private readonly json: string;
  private readonly jsonBytes: number;
  /** The shared first part, for payloads of `firstFor` bytes (the header holds the length). */
  private first: Buffer | undefined;
  private firstFor = -1;

  constructor(message: Omit<Envelope, 'to'>) {
    this.json = JSON.stringify(message);
    this.jsonBytes = Buffer.byteLength(this.json);
  }

  /** Writes the envelope, addressed to `to`, to a connection of this process. */
  writeTo(socket: SignalingSocket, to: string): void {
    // What Socket.IO's own emit checks: nothing is written to a connection that is going away.
    if (socket.conn.readyState !== 'open') return;
    const ending = `,"to":${JSON.stringify(to)}}]`;
    const tail = Buffer.from(ending);
    // The envelope without its closing brace, then the ending: `{…,"to":"<sid>"}]`.
    const payloadBytes = PAYLOAD_PREFIX.length + this.jsonBytes - 1 + tail.length;
    if (this.firstFor !== payloadBytes) {
      const { header, offset } = frameHeader(payloadBytes, payloadBytes - tail.length);
      header.write(PAYLOAD_PREFIX, offset, 'latin1');
      header.write(this.json, offset + PAYLOAD_PREFIX.length, this.jsonBytes - 1);
      this.first = header;
      this.firstFor = payloadBytes;
    }
    const options: FrameOptions = {
      wsPreEncodedFrame: [this.first as Buffer, tail],
      // The envelope: `{…` and `,"to":"<sid>"}` (the ending without the packet's `]`).
      envelopeBytes: this.jsonBytes - 1 + tail.length - 1,
      compress: false,
    };
    // Over long-polling engine.io sends this string instead of the frame.
    socket.conn.write(`${JSONGLE_FRAME}${this.json.slice(0, -1)}${ending}`, options);
  }
}
