import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { jsonSchemaDocument } from '../src/protocol/envelope';
import { readPackageInfo } from '../src/server';

/** Writes docs/schema.json, the published contract (test/schema.test.ts checks it is current). */
const file = path.join(__dirname, '..', 'docs', 'schema.json');
writeFileSync(file, `${JSON.stringify(jsonSchemaDocument(readPackageInfo().version), null, 2)}\n`);
console.log(`wrote ${file}`);
