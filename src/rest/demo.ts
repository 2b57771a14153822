import path from 'node:path';
import express, { Router } from 'express';
import type { Config } from '../config';

const PROJECT_ROOT = path.join(__dirname, '..', '..');

/**
 * GET /demo: a page that makes a call through this server, for trying it and as an example for
 * client authors. Socket.IO's browser client comes from the installed package: no CDN.
 */
export function demoRouter(config: Pick<Config, 'useHTTPS'>, wsPort: () => number): Router {
  const clientBundle = path.join(path.dirname(require.resolve('socket.io-client/package.json')), 'dist');
  return Router()
    .get('/demo/config.json', (_req, res) => {
      res.json({ wsPort: wsPort(), useHTTPS: config.useHTTPS });
    })
    .use('/demo/vendor', express.static(clientBundle, { index: false }))
    .use('/demo', express.static(path.join(PROJECT_ROOT, 'public', 'demo')));
}
