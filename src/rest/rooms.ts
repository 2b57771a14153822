import { Router } from 'express';
import type { Registry } from '../registry/registry';
import { requireAdmin } from './admin-auth';

/** GET /rooms and GET /rooms/:rid: the admin view (issue #9), from the registry, so cluster-wide. */
export function roomsRouter(registry: Pick<Registry, 'details'>, adminToken: string): Router {
  return Router()
    .get('/rooms', requireAdmin(adminToken), async (_req, res) => {
      const rooms = await registry.details();
      res.json({ rooms: rooms.sort((a, b) => a.rid.localeCompare(b.rid)) });
    })
    .get('/rooms/:rid', requireAdmin(adminToken), async (req, res) => {
      const rid = String(req.params.rid);
      const [room] = await registry.details(rid);
      if (room) res.json(room);
      else res.status(404).json({ errorCode: 404002, errorDetails: `No room ${rid}` });
    });
}
