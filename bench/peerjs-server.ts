import type { AddressInfo, Server } from 'node:net';
import { PEERJS_KEY } from './peerjs-client';

/**
 * The second baseline of issue #8: the PeerJS server (npm `peer`, 1.x) as its README starts it,
 * `PeerServer({ port })`, on its own WebSocket protocol. It has no rooms: a peer registers with
 * its id in the WebSocket URL and gets `{"type":"OPEN"}`; OFFER, ANSWER and CANDIDATE messages
 * go to `dst` with `src` added (see bench/peerjs-client.ts). Only the handshake and 1:1 relay
 * scenarios fit it.
 */

export interface PeerjsServer {
  listen(host: string): Promise<number>;
  connections(): number;
  close(): Promise<void>;
}

export function createPeerjsServer(): PeerjsServer {
  let peers = 0;
  let listening: Server | undefined;
  return {
    listen: async (host) => {
      // A dynamic import: peer's typings (dist/peer.d.ts in a "type": "module" package) read as ESM
      // to TypeScript, though `require('peer')` loads its CommonJS build, which is what this becomes.
      const { PeerServer } = await import('peer');
      return new Promise((resolve, reject) => {
        const app = PeerServer(
          // Its default of 5,000 peers would refuse what a bench run opens; ours is raised the same way.
          { host, port: 0, key: PEERJS_KEY, concurrent_limit: 100_000 },
          (server) => {
            listening = server;
            resolve((server.address() as AddressInfo).port);
          },
        );
        // peer exposes no count of its peers: registered ones are counted from its own events
        // ('disconnect' also covers the peers its heartbeat check drops). No peer reconnects here.
        app.on('connection', () => peers++);
        app.on('disconnect', () => peers--);
        // Without a listener, peer's re-emitted socket errors (a client gone mid-frame) would throw.
        app.on('error', reject);
      });
    },
    connections: () => peers,
    // PeerServer has no close(): stop listening; its timers and sockets end with the process (server-child exits next).
    close: async () => {
      listening?.close();
    },
  };
}
