import { Router } from 'express';
import { jsonSchemaDocument } from '../protocol/envelope';

/** GET /schema: the envelopes as JSON Schema, for client authors and their validators. */
export function schemaRouter(version: string): Router {
  const document = jsonSchemaDocument(version);
  return Router().get('/schema', (_req, res) => {
    res.json(document);
  });
}
