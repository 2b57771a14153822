import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import type { Config } from '../src/config';

/**
 * The cost floor of issue #8: a bare Socket.IO 4 server with the same options as ours that relays
 * `jsongle` events to the other members of a room, with no protocol logic. It answers a minimal
 * session-hello and joins so that the load generator drives it with the very code it drives ours
 * with; it validates nothing, rewrites nothing and counts nothing.
 */

interface Message {
  id?: unknown;
  to?: unknown;
  jsongle?: { action?: unknown; query?: unknown; transaction?: unknown; description?: { rid?: unknown } };
}

const SERVER_ID = 'baseline';

export interface BaselineServer {
  listen(host: string): Promise<number>;
  connections(): number;
  close(): Promise<void>;
}

export function createBaselineServer(config: Pick<Config, 'pingIntervalMs' | 'pingTimeoutMs' | 'maxMessageBytes'>): BaselineServer {
  const httpServer = http.createServer();
  // The options of src/server.ts, from the same Config.
  const io = new Server(httpServer, {
    serveClient: false,
    cors: { origin: false },
    pingInterval: config.pingIntervalMs,
    pingTimeout: config.pingTimeoutMs,
    maxHttpBufferSize: Math.max(1_000_000, config.maxMessageBytes * 4),
  });

  io.on('connection', (socket) => {
    const reply = (jsongle: Record<string, unknown>) =>
      socket.emit('jsongle', { id: randomUUID(), from: SERVER_ID, to: socket.id, jsongle });
    socket.on('jsongle', (message: Message) => {
      const jsongle = message.jsongle;
      const action = jsongle?.action;
      if (action === 'iq-result' && jsongle?.query === 'session-hello') {
        reply({ action: 'ack', status: 'success', transaction: jsongle.transaction });
      } else if (action === 'iq-set' && typeof jsongle?.description?.rid === 'string') {
        void socket.join(jsongle.description.rid);
        reply({
          action: 'iq-result',
          query: jsongle.query,
          transaction: jsongle.transaction,
          description: { rid: jsongle.description.rid, members: [] },
        });
      } else if (typeof message.to === 'string') {
        socket.to(message.to).emit('jsongle', message);
      }
    });
    reply({ action: 'iq-get', query: 'session-hello', transaction: randomUUID(), description: { sn: SERVER_ID } });
  });

  return {
    listen: (host) =>
      new Promise((resolve, reject) => {
        httpServer.once('error', reject);
        httpServer.listen(0, host, () => resolve((httpServer.address() as AddressInfo).port));
      }),
    connections: () => io.engine.clientsCount,
    close: async () => {
      await io.close();
    },
  };
}
