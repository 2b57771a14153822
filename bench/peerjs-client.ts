import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';

/**
 * What a PeerJS browser client (peerjs 1.x, lib/socket.ts) does on the wire, for the load
 * generator: one WebSocket to `<path>peerjs?key=…&id=…&token=…`, registered once the server sends
 * `{"type":"OPEN"}`; `{"type":"HEARTBEAT"}` every 5 s; OFFER/ANSWER/CANDIDATE sent as
 * `{type, dst, payload}` and delivered to `dst` as `{type, src, dst, payload}` (peer 1.0's
 * transmission handler re-serialises exactly those four fields).
 */

/** The WebSocket path PeerServer listens on with its default `path: '/'` (peer's WS_PATH). */
export const PEERJS_PATH = '/peerjs';
/** peer's default key; clients send it in the URL. */
export const PEERJS_KEY = 'peerjs';

/** peerjs's default `pingInterval`; peer closes a peer silent for `alive_timeout` (90 s). */
export const PEERJS_HEARTBEAT_MS = 5000;
const HEARTBEAT = JSON.stringify({ type: 'HEARTBEAT' });

export interface PeerjsMessage {
  type?: unknown;
  src?: unknown;
  payload?: { ts?: unknown; run?: unknown; msg?: unknown } | null;
}

export interface Peer {
  ws: WebSocket;
  close(): void;
}

/** Opens peer `id` at `url` (ws://host:port/peerjs); resolves on OPEN, rejects on ERROR, ID-TAKEN, a close or the timeout. */
export function openPeer(url: string, id: string, timeoutMs: number, onMessage: (message: PeerjsMessage) => void): Promise<Peer> {
  const token = randomBytes(8).toString('hex');
  const ws = new WebSocket(`${url}?key=${PEERJS_KEY}&id=${encodeURIComponent(id)}&token=${token}`);
  let heartbeat: NodeJS.Timeout | undefined;
  const peer: Peer = {
    ws,
    close: () => {
      clearTimeout(heartbeat);
      ws.close();
    },
  };
  // As the client does: the next heartbeat is scheduled when one is sent, while the socket is open.
  const beat = () => {
    heartbeat = setTimeout(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(HEARTBEAT);
      beat();
    }, PEERJS_HEARTBEAT_MS);
  };
  return new Promise<Peer>((resolve, reject) => {
    let opened = false;
    const fail = (why: string) => {
      clearTimeout(timer);
      peer.close();
      reject(new Error(why));
    };
    const timer = setTimeout(() => fail('PeerJS OPEN timed out'), timeoutMs);
    ws.on('error', (error) => {
      if (!opened) fail(`PeerJS socket error ${error.message}`);
    });
    ws.on('close', () => {
      clearTimeout(heartbeat);
      if (!opened) fail('PeerJS socket closed before OPEN');
    });
    ws.on('message', (data: Buffer) => {
      let message: PeerjsMessage;
      try {
        message = JSON.parse(data.toString()) as PeerjsMessage;
      } catch {
        return;
      }
      if (opened) {
        onMessage(message);
        return;
      }
      if (message.type === 'OPEN') {
        opened = true;
        clearTimeout(timer);
        beat();
        resolve(peer);
      } else if (message.type === 'ERROR' || message.type === 'ID-TAKEN') {
        fail(`PeerJS ${message.type}: ${JSON.stringify(message.payload)}`);
      }
    });
  });
}

/**
 * A trickled ICE candidate as peerjs's negotiator sends it (`payload: {candidate, type, connectionId}`),
 * with the bench's due time and run beside it, as in the JSONgle transport-info's description.
 */
export function candidateFrame(dst: string, connectionId: string, candidate: string, run: string, due: number): string {
  return JSON.stringify({
    type: 'CANDIDATE',
    dst,
    payload: { candidate: { candidate, sdpMid: '0', sdpMLineIndex: 0 }, type: 'media', connectionId, ts: due, run },
  });
}
