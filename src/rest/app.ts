import cors from 'cors';
import express, { type ErrorRequestHandler, type Router } from 'express';
import helmet from 'helmet';
import type { Logger } from '../observability/logger';

/**
 * The REST application: the routers, then JSON answers for what none of them took. A client
 * never sees an HTML page or a stack trace.
 */
export function createRestApp(routers: Router[], options: { corsOrigins: string[]; useHTTPS: boolean }, logger: Logger): express.Express {
  const { corsOrigins, useHTTPS } = options;
  const app = express();
  app.disable('x-powered-by');
  // Security headers on every answer; the CSP lets the demo page reach the Socket.IO port,
  // which is another origin (another port), and nothing else.
  // Over plain HTTP (behind a TLS proxy) neither HSTS nor an upgrade of requests is ours to ask.
  app.use(
    helmet({
      contentSecurityPolicy: {
        directives: { connectSrc: ["'self'", 'wss:', 'ws:', 'https:', 'http:'], upgradeInsecureRequests: useHTTPS ? [] : null },
      },
      strictTransportSecurity: useHTTPS,
    }),
  );
  // Empty corsPolicyOrigin: no CORS headers at all, so browsers refuse cross-origin calls.
  if (corsOrigins.length > 0) app.use(cors({ origin: corsOrigins }));
  app.use(express.json({ limit: '16kb' }));
  for (const router of routers) app.use(router);

  app.use((req, res) => {
    res.status(404).json({ errorCode: 404000, errorDetails: `No route ${req.method} ${req.path}` });
  });
  const onError: ErrorRequestHandler = (error: { status?: number; type?: string; message?: string }, req, res, _next) => {
    const status = error.status ?? 500;
    if (status >= 500) logger.error('REST request failed', { module: 'rest', path: req.path, error: error.message });
    const details =
      error.type === 'entity.parse.failed'
        ? 'Malformed JSON body'
        : status >= 500
          ? 'Internal server error'
          : (error.message ?? 'Bad request');
    res.status(status).json({ errorCode: status === 400 ? 400001 : status * 1000, errorDetails: details });
  };
  app.use(onError);
  return app;
}
