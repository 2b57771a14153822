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
  /** The envelope's size in bytes, for jsongle_bytes_sent_total. */
  envelopeBytes: number;
  /** permessage-deflate is off (Socket.IO's default), which a pre-built frame needs. */
  compress: false;
}

/** The header of an unmasked, final WebSocket text frame of `length` bytes (RFC 6455 §5.2). */
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

/**
 * A server envelope serialized once, for one recipient or many: only `to` differs between
 * recipients, so the rest is turned into bytes once and every recipient's frame shares it.
 * Socket.IO's emit would encode, serialize and frame it again for each recipient, and walk
 * it for binary data that JSONgle never has.
 */
export class EncodedEnvelope {
  /** `"id":…}]`: the envelope after its first key, and the end of the Socket.IO packet. */
  private readonly rest: string;
  private readonly tail: Buffer;

  constructor(message: Omit<Envelope, 'to'>) {
    // `{"id":…}` becomes `{"to":"<sid>","id":…}`: key order means nothing in JSON.
    this.rest = `${JSON.stringify(message).slice(1)}]`;
    this.tail = Buffer.from(this.rest);
  }

  /** Writes the envelope, addressed to `to`, to a connection of this process. */
  writeTo(socket: SignalingSocket, to: string): void {
    // What Socket.IO's own emit checks: nothing is written to a connection that is going away.
    if (socket.conn.readyState !== 'open') return;
    const head = `${JSONGLE_FRAME}{"to":${JSON.stringify(to)},`;
    const headBytes = Buffer.byteLength(head);
    const { header, offset } = frameHeader(ENGINE_MESSAGE.length + headBytes + this.tail.length, ENGINE_MESSAGE.length + headBytes);
    header.write(ENGINE_MESSAGE + head, offset);
    const options: FrameOptions = {
      wsPreEncodedFrame: [header, this.tail],
      envelopeBytes: headBytes - JSONGLE_FRAME.length + this.tail.length - 1,
      compress: false,
    };
    socket.conn.write(head + this.rest, options);
  }
}
