import { Router } from 'express';

/** GET /ping: liveness, 200 while the process runs (PROTOCOL.md §8). */
export function pingRouter(): Router {
  return Router().get('/ping', (_req, res) => {
    res.json({ status: 'ok' });
  });
}
