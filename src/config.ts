import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import dotenv from 'dotenv';

export const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  wsPort: number;
  restPort: number;
  useHTTPS: boolean;
  /** PEM contents, read once at start-up (empty when useHTTPS is off). */
  tls: { key: string; cert: string } | undefined;
  corsPolicyOrigin: string[];
  id: string;
  appToken: string;
  adminToken: string;
  maxConcurrentUsers: number;
  maxConnectionsPerAddress: number;
  multiRoomPrefix: string;
  maxMembersPerMultiRoom: number;
  maxMultiRoomPerUser: number;
  helloTimeoutMs: number;
  maxMessageBytes: number;
  maxMessagesPerSecond: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  logDefaultLevel: LogLevel;
  /** The log file's level, on its own: an operator's record need not follow the console's. */
  logFileLevel: LogLevel;
  logPath: string;
  logFilesNumber: number;
  logFilePeriod: string;
  /** Serves the demo page at /demo on the REST port. */
  demo: boolean;
  /** Empty: the embedded in-memory registry; set: the Redis registry and adapter (several processes). */
  redisUrl: string;
  nodeHeartbeatMs: number;
  /** coturn's static-auth-secret: set, the hello's ack carries time-limited TURN credentials. */
  turnSecret: string;
  turnUris: string[];
  turnTtlSeconds: number;
  /** How long a dropped connection's session is held for a resume (0: not held). */
  reconnectGraceMs: number;
}

export class ConfigError extends Error {}

type Source = Record<string, string | undefined>;

/** The shipped defaults, whatever the working directory: the last layer of every lookup. */
const PACKAGE_DEFAULTS = path.join(__dirname, '..', '.env.defaults');

/**
 * Reads one setting from the first layer that defines it, even as empty: the environment, then
 * `.env`, then `.env.defaults` (PROTOCOL.md §10). `aliases` are older spellings still accepted.
 */
function reader(layers: Source[]) {
  return (key: string, ...aliases: string[]): string => {
    for (const layer of layers) {
      for (const name of [key, ...aliases]) {
        const value = layer[name];
        if (value !== undefined) return value.trim();
      }
    }
    return '';
  };
}

function fail(key: string, value: string, expected: string): never {
  throw new ConfigError(`Invalid setting ${key}=${JSON.stringify(value)}: expected ${expected}`);
}

function integer(key: string, value: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(value)) fail(key, value, `an integer from ${min} to ${max}`);
  const n = Number(value);
  if (n < min || n > max) fail(key, value, `an integer from ${min} to ${max}`);
  return n;
}

function boolean(key: string, value: string): boolean {
  const lower = value.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(lower)) return true;
  if (['false', '0', 'no', 'off'].includes(lower)) return false;
  return fail(key, value, 'true or false');
}

function nonEmpty(key: string, value: string, max = 256): string {
  if (value === '' || value.length > max) fail(key, value, `a non-empty string of at most ${max} characters`);
  return value;
}

function pem(key: string, file: string, baseDir: string): string {
  if (file === '') fail(key, file, 'the path of a PEM file (or useHTTPS=false)');
  const resolved = path.resolve(baseDir, file);
  if (!existsSync(resolved)) fail(key, file, `an existing PEM file (${resolved} does not exist)`);
  const contents = readFileSync(resolved, 'utf8');
  if (!contents.includes('-----BEGIN')) fail(key, file, 'a PEM file');
  return contents;
}

/** Accepts what winston-daily-rotate-file can rotate on: `1d` (daily), `Nh` (1–24) or `Nm` (1–60). */
function logPeriod(key: string, value: string): string {
  const match = /^(\d+)([mhd])$/.exec(value);
  const n = match ? Number(match[1]) : 0;
  const unit = match?.[2];
  const ok = (unit === 'd' && n === 1) || (unit === 'h' && n >= 1 && n <= 24) || (unit === 'm' && n >= 1 && n <= 60);
  if (!ok) fail(key, value, '1d, a number of hours (1h to 24h) or of minutes (1m to 60m)');
  return value;
}

function redisUrl(key: string, value: string): string {
  if (value !== '' && !/^rediss?:\/\/./.test(value)) fail(key, value, 'empty, or a redis:// or rediss:// URL');
  return value;
}

function turnUris(key: string, value: string, required: boolean): string[] {
  const uris = value
    .split(',')
    .map((uri) => uri.trim())
    .filter((uri) => uri !== '');
  if (required && uris.length === 0) fail(key, value, 'at least one turn:, turns: or stun: URI when turnSecret is set');
  for (const uri of uris) if (!/^(turns?|stuns?):./.test(uri)) fail(key, value, 'comma-separated turn:, turns: or stun: URIs');
  return uris;
}

/**
 * Builds the configuration once, at start-up. `baseDir` holds `.env`, `.env.defaults` and the
 * relative key/cert paths; `env` is normally `process.env`. Throws ConfigError naming the setting.
 */
export function loadConfig(env: Source = process.env, baseDir = process.cwd()): Readonly<Config> {
  const file = (full: string): Source => (existsSync(full) ? dotenv.parse(readFileSync(full)) : {});
  const get = reader([env, file(path.join(baseDir, '.env')), file(path.join(baseDir, '.env.defaults')), file(PACKAGE_DEFAULTS)]);

  const useHTTPS = boolean('useHTTPS', get('useHTTPS'));
  const logLevel = (key: string): LogLevel => {
    const value = get(key);
    if (!(LOG_LEVELS as readonly string[]).includes(value)) fail(key, value, LOG_LEVELS.join(', '));
    return value as LogLevel;
  };

  const config: Config = {
    wsPort: integer('wsPort', get('wsPort'), 0, 65535),
    restPort: integer('restPort', get('restPort'), 0, 65535),
    useHTTPS,
    tls: useHTTPS ? { key: pem('key', get('key'), baseDir), cert: pem('cert', get('cert'), baseDir) } : undefined,
    corsPolicyOrigin: get('corsPolicyOrigin')
      .split(',')
      .map((origin) => origin.trim())
      .filter((origin) => origin !== ''),
    id: nonEmpty('id', get('id')),
    appToken: get('appToken'),
    adminToken: get('adminToken'),
    maxConcurrentUsers: integer('maxConcurrentUsers', get('maxConcurrentUsers'), 1),
    maxConnectionsPerAddress: integer('maxConnectionsPerAddress', get('maxConnectionsPerAddress'), 1),
    multiRoomPrefix: nonEmpty('multiRoomPrefix', get('multiRoomPrefix'), 64),
    maxMembersPerMultiRoom: integer('maxMembersPerMultiRoom', get('maxMembersPerMultiRoom'), 2),
    maxMultiRoomPerUser: integer('maxMultiRoomPerUser', get('maxMultiRoomPerUser', 'maxMultiRoomsPerUser'), 1),
    helloTimeoutMs: integer('helloTimeoutMs', get('helloTimeoutMs'), 100),
    maxMessageBytes: integer('maxMessageBytes', get('maxMessageBytes'), 1024, 16 * 1024 * 1024),
    maxMessagesPerSecond: integer('maxMessagesPerSecond', get('maxMessagesPerSecond'), 1),
    pingIntervalMs: integer('pingIntervalMs', get('pingIntervalMs'), 100),
    pingTimeoutMs: integer('pingTimeoutMs', get('pingTimeoutMs'), 100),
    logDefaultLevel: logLevel('logDefaultLevel'),
    logFileLevel: logLevel('logFileLevel'),
    logPath: nonEmpty('logPath', get('logPath'), 4096),
    logFilesNumber: integer('logFilesNumber', get('logFilesNumber'), 1),
    logFilePeriod: logPeriod('logFilePeriod', get('logFilePeriod')),
    // Empty: on in development, off when NODE_ENV=production.
    demo: get('demo') === '' ? get('NODE_ENV') !== 'production' : boolean('demo', get('demo')),
    redisUrl: redisUrl('redisUrl', get('redisUrl')),
    nodeHeartbeatMs: integer('nodeHeartbeatMs', get('nodeHeartbeatMs'), 100),
    turnSecret: get('turnSecret'),
    turnUris: turnUris('turnUris', get('turnUris'), get('turnSecret') !== ''),
    turnTtlSeconds: integer('turnTtlSeconds', get('turnTtlSeconds'), 60, 7 * 24 * 3600),
    reconnectGraceMs: integer('reconnectGraceMs', get('reconnectGraceMs'), 0, 10 * 60 * 1000),
  };
  return Object.freeze(config);
}
