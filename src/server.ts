import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Server } from 'socket.io';
import type { Config } from './config';
import { createLogging, type Logging } from './observability/logger';
import { Metrics } from './observability/metrics';
import { MemoryRegistry } from './registry/memory-registry';
import { connectRedis } from './registry/redis-setup';
import type { Registry } from './registry/registry';
import { aboutRouter, type PackageInfo } from './rest/about';
import { createRestApp } from './rest/app';
import { demoRouter } from './rest/demo';
import { logsRouter } from './rest/logs';
import { metricsRouter } from './rest/metrics';
import { pingRouter, readyRouter } from './rest/ping';
import { roomsRouter } from './rest/rooms';
import { schemaRouter } from './rest/schema';
import { selfTestRouter } from './rest/self-test';
import { attachSignaling } from './signaling/signaling';
import type { SignalingServer } from './signaling/types';

export interface JsongleServer {
  /** Binds both ports (0 picks free ones) and resolves with the ports bound. */
  listen(host?: string): Promise<{ wsPort: number; restPort: number }>;
  /**
   * Stops the signaling side only: closes every connection (their rooms are told) and the ws port.
   * REST stays up, so that /ready and /tests report it while a shutdown drains.
   */
  closeSignaling(): Promise<void>;
  /** Closes both servers and every connection, and resolves once all is cleaned up. */
  close(): Promise<void>;
  readonly registry: Registry;
  readonly metrics: Metrics;
  readonly logging: Logging;
}

export function readPackageInfo(): PackageInfo {
  // One level below the package root both from src/ (tests, tsx) and from dist/.
  const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as PackageInfo;
  return { name: pkg.name, version: pkg.version, description: pkg.description };
}

/**
 * Builds the server; with `redisUrl` set it connects to Redis first. Nothing listens until listen().
 */
export async function createServer(config: Readonly<Config>, deps: { logging?: Logging } = {}): Promise<JsongleServer> {
  const logging = deps.logging ?? createLogging(config);
  const logger = logging.logger;
  const shared = config.redisUrl === '' ? undefined : await connectRedis(config, logger);
  const registry: Registry = shared?.registry ?? new MemoryRegistry();
  const metrics = new Metrics();
  const info = readPackageInfo();
  const started = new Date().toJSON();
  const probeKey = randomBytes(32).toString('base64url');
  const selfTestRoomPrefix = `self-test-${randomBytes(8).toString('hex')}-`;
  metrics.observe(registry, (rid) => rid.startsWith(selfTestRoomPrefix));

  const makeHttp = (handler?: http.RequestListener) =>
    config.tls ? https.createServer({ key: config.tls.key, cert: config.tls.cert }, handler) : http.createServer(handler);

  // Socket.IO takes its own path; anything else on this port gets a JSON 404 at once, rather than
  // no answer at all (an open socket held until Node's request timeout).
  const wsHttp = makeHttp((req, res) => {
    res
      .writeHead(404, { 'content-type': 'application/json' })
      .end(JSON.stringify({ errorCode: 404000, errorDetails: `No route ${req.method ?? ''} ${req.url ?? ''} on the Socket.IO port` }));
  });
  const io: SignalingServer = new Server(wsHttp, {
    serveClient: false,
    cors: { origin: config.corsPolicyOrigin.length > 0 ? config.corsPolicyOrigin : false },
    pingInterval: config.pingIntervalMs,
    pingTimeout: config.pingTimeoutMs,
    // Messages over maxMessageBytes get 413001 and the connection lives (see signaling.ts); only
    // frames far beyond it close the transport, so that nobody can make the server buffer megabytes.
    maxHttpBufferSize: Math.max(1_000_000, config.maxMessageBytes * 4),
    ...(shared ? { adapter: shared.adapter } : {}),
  });
  const signaling = attachSignaling(io, {
    config,
    registry,
    metrics,
    logger,
    probeKey,
    about: { version: info.version, sn: config.id, info: info.description },
    clustered: shared !== undefined,
  });
  // Socket.IO keeps each connection's first HTTP request, headers and all, for its whole life;
  // nothing here reads it after the handshake, so it goes (about 1.8 KB per connection).
  io.engine.on('connection', (raw: { request: unknown }) => {
    raw.request = null;
  });
  // engine.io 6.6 wraps a WebSocket upgrade in a stand-in response that a 'close' listener on the
  // TCP socket keeps alive for the connection's whole life, and with it the request. Engine.io
  // calls its writeHead() once it is done with it, just before handing the socket to ws: from
  // then on nothing reads its `req`, so it is let go there (bench/FINDINGS.md, memory).
  io.engine.use((_req: http.IncomingMessage, res: http.ServerResponse, next: () => void) => {
    if (!(res instanceof http.ServerResponse)) {
      const upgrade = res as unknown as { req: unknown; writeHead: () => void };
      upgrade.writeHead = () => {
        upgrade.req = null;
      };
    }
    next();
  });

  const port = (server: http.Server) => (server.address() as AddressInfo | null)?.port ?? 0;
  const restHttp = makeHttp(
    createRestApp(
      [
        aboutRouter(config, info, () => ({ wsPort: port(wsHttp), restPort: port(restHttp) }), started),
        pingRouter(),
        readyRouter(registry),
        logsRouter(logging, config.adminToken),
        metricsRouter(metrics),
        schemaRouter(info.version),
        roomsRouter(registry, config.adminToken),
        selfTestRouter({ config, probeKey, roomPrefix: selfTestRoomPrefix, wsPort: () => port(wsHttp) }),
        ...(config.demo ? [demoRouter(config, () => port(wsHttp))] : []),
      ],
      { corsOrigins: config.corsPolicyOrigin, useHTTPS: config.useHTTPS },
      logger,
    ),
  );

  const bind = (server: http.Server, portNumber: number, host?: string) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(portNumber, host, () => {
        server.off('error', reject);
        resolve();
      });
    });

  let closingSignaling: Promise<void> | undefined;
  const closeSignaling = () => {
    closingSignaling ??= (async () => {
      signaling.announceShutdown();
      // Disconnects every socket; their disconnect handlers clean the registry up and tell the
      // members that remain (on other processes, with Redis) that these left.
      await io.close();
      await signaling.drain();
    })();
    return closingSignaling;
  };
  let closing: Promise<void> | undefined;
  return {
    registry,
    metrics,
    logging,
    closeSignaling,
    async listen(host) {
      await shared?.subscribed();
      await bind(wsHttp, config.wsPort, host);
      await bind(restHttp, config.restPort, host);
      const ports = { wsPort: port(wsHttp), restPort: port(restHttp) };
      logger.info(`${info.name} ${info.version} started`, { module: 'server', id: config.id, ...ports, https: config.useHTTPS });
      if (config.appToken === '') logger.warn('appToken is empty: any client may connect', { module: 'server' });
      return ports;
    },
    close() {
      closing ??= (async () => {
        restHttp.closeAllConnections();
        const restClosed = new Promise<void>((resolve) => restHttp.close(() => resolve()));
        await closeSignaling();
        await restClosed;
        await (shared ? shared.close() : registry.close());
      })();
      return closing;
    },
  };
}
