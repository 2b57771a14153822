import { Router } from 'express';
import type { Registry } from '../registry/registry';

/** GET /ping: liveness, 200 while the process runs, Redis or not (PROTOCOL.md §8). */
export function pingRouter(): Router {
  return Router().get('/ping', (_req, res) => {
    res.json({ status: 'ok' });
  });
}

/** GET /ready: readiness for load balancers, 503 while the registry cannot serve new sessions. */
export function readyRouter(registry: Pick<Registry, 'health'>): Router {
  return Router().get('/ready', async (_req, res) => {
    const health = await registry.health();
    if (health.ready) res.json({ status: 'ready' });
    else res.status(503).json({ status: 'not-ready', reason: health.reason });
  });
}
