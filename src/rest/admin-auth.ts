import type { RequestHandler } from 'express';
import { sameSecret } from '../secret';

/** `Authorization: Bearer <adminToken>` on admin routes; open when no adminToken is set (PROTOCOL.md §10). */
export function requireAdmin(adminToken: string): RequestHandler {
  return (req, res, next) => {
    if (adminToken === '') return next();
    const header = req.get('authorization') ?? '';
    const presented = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
    if (sameSecret(presented, adminToken)) return next();
    res.status(401).json({ errorCode: 401002, errorDetails: 'This route needs the header Authorization: Bearer <adminToken>' });
  };
}
