import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dotenv from 'dotenv';
import { ConfigError, loadConfig } from '../src/config';
import { PROJECT_ROOT } from './helpers/server';

const KEY = readFileSync(path.join(PROJECT_ROOT, 'key.pem'), 'utf8');
const CERT = readFileSync(path.join(PROJECT_ROOT, 'cert.pem'), 'utf8');

/** The defaults PROTOCOL.md §10 lists, as loadConfig types them. */
const DOCUMENTED_DEFAULTS = {
  wsPort: 8080,
  restPort: 8081,
  useHTTPS: true,
  tls: { key: KEY, cert: CERT },
  corsPolicyOrigin: [],
  id: 'jsongle-server',
  appToken: '',
  adminToken: '',
  maxConcurrentUsers: 10,
  maxConnectionsPerAddress: 100,
  multiRoomPrefix: '#muc#',
  maxMembersPerMultiRoom: 10,
  maxMultiRoomPerUser: 10,
  helloTimeoutMs: 10000,
  maxMessageBytes: 65536,
  maxMessagesPerSecond: 50,
  pingIntervalMs: 25000,
  pingTimeoutMs: 20000,
  logDefaultLevel: 'warn',
  logFileLevel: 'info',
  logPath: '/tmp/jsongle-server.log',
  logFilesNumber: 3,
  logFilePeriod: '1d',
};

describe('loadConfig', () => {
  let root: string;

  /** A fresh folder holding copies of the dev key and certificate, plus the given files. */
  function dirWith(files: Record<string, string> = {}): string {
    const made = mkdtempSync(path.join(root, 'case-'));
    copyFileSync(path.join(PROJECT_ROOT, 'key.pem'), path.join(made, 'key.pem'));
    copyFileSync(path.join(PROJECT_ROOT, 'cert.pem'), path.join(made, 'cert.pem'));
    for (const [name, contents] of Object.entries(files)) writeFileSync(path.join(made, name), contents);
    return made;
  }

  /** The ConfigError loadConfig throws (fails the test if it throws nothing or something else). */
  function configError(env: Record<string, string>, baseDir = dirWith()): ConfigError {
    try {
      loadConfig(env, baseDir);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      return error as ConfigError;
    }
    throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
  }

  beforeAll(() => {
    root = mkdtempSync(path.join(tmpdir(), 'jsongle-config-'));
  });
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  describe('defaults', () => {
    test("with only the project's .env.defaults, every setting has its documented default", () => {
      const dir = dirWith({ '.env.defaults': readFileSync(path.join(PROJECT_ROOT, '.env.defaults'), 'utf8') });
      expect(loadConfig({}, dir)).toMatchObject(DOCUMENTED_DEFAULTS);
    });

    test('with no .env files at all, the built-in fallbacks are the same documented defaults', () => {
      expect(loadConfig({}, dirWith())).toMatchObject(DOCUMENTED_DEFAULTS);
    });

    test("the project's .env.defaults, read by dotenv as loadConfig reads it, spells out each documented default", () => {
      // A value dotenv cannot read (an unquoted `#` starts a comment) is silently replaced by the
      // code's fallback, so an operator copying the line into .env would not get what they wrote.
      const parsed = dotenv.parse(readFileSync(path.join(PROJECT_ROOT, '.env.defaults')));
      const expected = { ...DOCUMENTED_DEFAULTS, key: './key.pem', cert: './cert.pem', corsPolicyOrigin: '' } as Record<string, unknown>;
      delete expected.tls;
      const asStrings = Object.fromEntries(
        Object.entries(expected).map(([name, value]) => [name, typeof value === 'string' ? value : JSON.stringify(value)]),
      );
      expect(parsed).toMatchObject(asStrings);
    });
  });

  describe('layers', () => {
    test('the environment beats .env, which beats .env.defaults', () => {
      const dir = dirWith({
        '.env.defaults': 'wsPort=7001\nrestPort=7002\nid=from-defaults\nlogFilesNumber=5\nmaxConcurrentUsers=6\n',
        '.env': 'restPort=7102\nid=from-dotenv\nmaxConcurrentUsers=7\n',
      });
      const config = loadConfig({ id: 'from-env', maxConcurrentUsers: '8' }, dir);
      expect(config).toMatchObject({ wsPort: 7001, restPort: 7102, id: 'from-env', logFilesNumber: 5, maxConcurrentUsers: 8 });
    });

    test('.env alone overrides the built-in fallbacks', () => {
      const dir = dirWith({ '.env': 'logDefaultLevel=debug\ncorsPolicyOrigin=https://a.example, https://b.example\n' });
      expect(loadConfig({}, dir)).toMatchObject({ logDefaultLevel: 'debug', corsPolicyOrigin: ['https://a.example', 'https://b.example'] });
    });

    test('a quoted value containing # is read as written', () => {
      const dir = dirWith({ '.env': 'multiRoomPrefix="#room#"\n' });
      expect(loadConfig({}, dir).multiRoomPrefix).toBe('#room#');
    });

    test('relative key and cert paths are resolved against baseDir; absolute ones are used as they are', () => {
      const relative = loadConfig({ key: './key.pem', cert: './cert.pem' }, dirWith());
      expect(relative.tls).toEqual({ key: KEY, cert: CERT });
      const absolute = loadConfig({ key: path.join(PROJECT_ROOT, 'key.pem'), cert: path.join(PROJECT_ROOT, 'cert.pem') }, dirWith());
      expect(absolute.tls).toEqual({ key: KEY, cert: CERT });
    });
  });

  describe('the alias maxMultiRoomsPerUser', () => {
    test('is accepted from the environment, over the canonical name in .env.defaults', () => {
      const dir = dirWith({ '.env.defaults': 'maxMultiRoomPerUser=10\n' });
      expect(loadConfig({ maxMultiRoomsPerUser: '4' }, dir).maxMultiRoomPerUser).toBe(4);
    });

    test('is accepted from .env', () => {
      const dir = dirWith({ '.env': 'maxMultiRoomsPerUser=3\n' });
      expect(loadConfig({}, dir).maxMultiRoomPerUser).toBe(3);
    });

    test('loses to the canonical name in the same layer', () => {
      expect(loadConfig({ maxMultiRoomPerUser: '5', maxMultiRoomsPerUser: '6' }, dirWith()).maxMultiRoomPerUser).toBe(5);
    });

    test('is validated like the canonical name', () => {
      expect(configError({ maxMultiRoomsPerUser: 'lots' }).message).toContain('"lots"');
    });
  });

  describe('booleans', () => {
    test.each([
      ['TRUE', true],
      ['True', true],
      ['true', true],
      ['false', false],
      ['FALSE', false],
    ])('useHTTPS=%s is %s', (value, expected) => {
      expect(loadConfig({ useHTTPS: value }, dirWith()).useHTTPS).toBe(expected);
    });

    test('useHTTPS=false needs neither key nor cert', () => {
      const config = loadConfig({ useHTTPS: 'false', key: './no-such-key.pem', cert: './no-such-cert.pem' }, dirWith());
      expect(config.useHTTPS).toBe(false);
      expect(config.tls).toBeUndefined();
    });
  });

  describe('bad values are refused with a ConfigError naming the setting and the value', () => {
    test.each([
      ['port out of range', 'wsPort', '70000'],
      ['port out of range', 'restPort', '65536'],
      ['not a number', 'wsPort', 'notaport'],
      ['not an integer', 'maxConcurrentUsers', '1.5'],
      ['not an integer', 'pingIntervalMs', '10e3'],
      ['negative', 'logFilesNumber', '-1'],
      ['negative', 'restPort', '-8081'],
      ['negative', 'helloTimeoutMs', '-5'],
      ['bad boolean', 'useHTTPS', 'maybe'],
      ['unknown log level', 'logDefaultLevel', 'loud'],
      ['unknown log level', 'logFileLevel', 'everything'],
      ['bad logFilePeriod', 'logFilePeriod', '2d'],
      ['bad logFilePeriod', 'logFilePeriod', 'daily'],
      ['bad logFilePeriod', 'logFilePeriod', '0h'],
      ['bad logFilePeriod', 'logFilePeriod', '61m'],
    ])('%s: %s=%s', (_kind, key, value) => {
      const error = configError({ [key]: value });
      expect(error.message).toContain(key);
      expect(error.message).toContain(value);
    });

    test.each(['key', 'cert'])('missing %s file with useHTTPS on', (key) => {
      const error = configError({ useHTTPS: 'true', [key]: './missing.pem' });
      expect(error.message).toContain(key);
      expect(error.message).toContain('./missing.pem');
    });

    test.each(['key', 'cert'])('%s file that is not PEM', (key) => {
      const dir = dirWith({ 'not-pem.txt': 'this is not a certificate\n' });
      const error = configError({ [key]: './not-pem.txt' }, dir);
      expect(error.message).toContain(key);
      expect(error.message).toContain('./not-pem.txt');
    });

    test('a bad value in .env is refused too', () => {
      const error = configError({}, dirWith({ '.env': 'restPort=eighty\n' }));
      expect(error.message).toContain('restPort');
      expect(error.message).toContain('eighty');
    });
  });

  test('the returned object is frozen', () => {
    const config = loadConfig({}, dirWith());
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as { wsPort: number }).wsPort = 1;
    }).toThrow(TypeError);
    expect(config.wsPort).toBe(8080);
  });
});

describe('the entry point with a bad setting', () => {
  test('exits non-zero with one line on stderr naming the setting, and no stack trace', async () => {
    const child = spawn('npx', ['tsx', 'src/index.ts'], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, wsPort: 'notaport' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout.resume();
    // Were the setting accepted, the server would run for ever: bound the wait.
    const killer = setTimeout(() => child.kill('SIGKILL'), 45_000);
    const code = await new Promise<number | null>((resolve) => child.on('close', (exitCode) => resolve(exitCode)));
    clearTimeout(killer);

    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('wsPort');
    expect(lines[0]).toContain('notaport');
    expect(stderr).not.toMatch(/^\s+at /m);
  }, 60_000);
});
