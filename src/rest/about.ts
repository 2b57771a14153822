import { Router } from 'express';
import type { Config } from '../config';

export interface PackageInfo {
  name: string;
  version: string;
  description: string;
}

/** GET /about: who this server is; never a secret (PROTOCOL.md §8). */
export function aboutRouter(
  config: Pick<Config, 'id' | 'useHTTPS'>,
  info: PackageInfo,
  ports: () => { wsPort: number; restPort: number },
  started: string,
): Router {
  return Router().get('/about', (_req, res) => {
    res.json({ ...info, id: config.id, started, configuration: { ...ports(), useHTTPS: config.useHTTPS } });
  });
}
