import { Router } from 'express';
import type { Metrics } from '../observability/metrics';

/** GET /metrics (Prometheus text) and GET /stats (the business metrics as JSON), from one registry. */
export function metricsRouter(metrics: Metrics): Router {
  return Router()
    .get('/metrics', async (_req, res) => {
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    })
    .get('/stats', async (_req, res) => {
      res.json(await metrics.stats());
    });
}
