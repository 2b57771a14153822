import { Router } from 'express';
import { LOG_LEVELS, type LogLevel } from '../config';
import type { Logging } from '../observability/logger';
import { requireAdmin } from './admin-auth';

const isLevel = (value: unknown): value is LogLevel => typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);

/** PUT /logs/levels: changes the console level at run time; the file stays at debug (PROTOCOL.md §8). */
export function logsRouter(logging: Logging, adminToken: string): Router {
  return Router().put('/logs/levels', requireAdmin(adminToken), (req, res) => {
    const level: unknown = (req.body as { level?: unknown } | undefined)?.level;
    if (!isLevel(level)) {
      res.status(400).json({ errorCode: 400001, errorDetails: `Body must be {"level": one of ${LOG_LEVELS.join(', ')}}` });
      return;
    }
    const was = logging.setConsoleLevel(level);
    // `to`, not `level`: winston would overwrite a `level` field with the line's own.
    logging.logger.warn('console log level changed', { module: 'rest', to: level, was });
    res.json({ level, was });
  });
}
