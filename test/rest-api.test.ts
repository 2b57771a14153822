import { readFileSync } from 'node:fs';
import path from 'node:path';
import winston from 'winston';
import { PROJECT_ROOT, startServer, type TestServer } from './helpers/server';

const pkg = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  description: string;
};

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * A level change is logged at warn, which the raised console level would print: keep it off the
 * test output (winston checks the level before calling the transport's `log`, so levels still apply).
 */
function quietConsole(server: TestServer): void {
  const console = server.server.logging.logger.transports.find((transport) => transport instanceof winston.transports.Console);
  if (console) jest.spyOn(console, 'log').mockImplementation((_info: unknown, next: () => void) => next());
}

function port(url: string): number {
  return Number(new URL(url).port);
}

describe('REST API over HTTPS', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server.close();
  });

  test('GET /about has exactly name, version, description, id, started and configuration', async () => {
    const res = await server
      .rest()
      .get('/about')
      .expect(200)
      .expect('content-type', /application\/json/);
    expect(res.body).toEqual({
      name: pkg.name,
      version: pkg.version,
      description: pkg.description,
      id: 'jsongle-server',
      started: expect.stringMatching(ISO_TIME) as unknown,
      configuration: { wsPort: port(server.wsUrl), restPort: port(server.restUrl), useHTTPS: true },
    });
    const started = Date.parse((res.body as { started: string }).started);
    expect(started).toBeLessThanOrEqual(Date.now());
  });

  test('GET /ping answers 200 {status: "ok"}', async () => {
    const res = await server
      .rest()
      .get('/ping')
      .expect(200)
      .expect('content-type', /application\/json/);
    expect(res.body).toEqual({ status: 'ok' });
  });

  test('an unknown route gets 404 JSON', async () => {
    const res = await server
      .rest()
      .get('/no/such/route')
      .expect(404)
      .expect('content-type', /application\/json/);
    expect(res.body).toEqual({ errorCode: 404000, errorDetails: expect.any(String) as unknown });
  });

  test('a malformed JSON body gets 400 JSON with errorCode 400001, not HTML nor a stack trace', async () => {
    const res = await server
      .rest()
      .put('/logs/levels')
      .set('Content-Type', 'application/json')
      .send('{"level": "debug"')
      .expect(400)
      .expect('content-type', /application\/json/);
    expect(res.body).toEqual({ errorCode: 400001, errorDetails: expect.any(String) as unknown });
    expect(res.text).not.toMatch(/<html|<pre|\bat .+:\d+:\d+/i);
    expect(server.server.logging.consoleLevel()).toBe('error');
  });

  describe('PUT /logs/levels', () => {
    beforeEach(() => {
      quietConsole(server);
    });
    afterEach(() => {
      server.server.logging.setConsoleLevel('error');
      jest.restoreAllMocks();
    });

    test('{level: "debug"} answers {level, was} and changes the console transport level', async () => {
      expect(server.server.logging.consoleLevel()).toBe('error');
      const res = await server
        .rest()
        .put('/logs/levels')
        .send({ level: 'debug' })
        .expect(200)
        .expect('content-type', /application\/json/);
      expect(res.body).toEqual({ level: 'debug', was: 'error' });
      expect(server.server.logging.consoleLevel()).toBe('debug');

      const back = await server.rest().put('/logs/levels').send({ level: 'error' }).expect(200);
      expect(back.body).toEqual({ level: 'error', was: 'debug' });
      expect(server.server.logging.consoleLevel()).toBe('error');
    });

    test.each([[{ level: 'loud' }], [{ level: 'DEBUG' }], [{ level: 3 }], [{}], [['debug']]])(
      '%j gets 400 {errorCode: 400001}',
      async (body) => {
        const res = await server
          .rest()
          .put('/logs/levels')
          .send(body)
          .expect(400)
          .expect('content-type', /application\/json/);
        expect(res.body).toEqual({ errorCode: 400001, errorDetails: expect.any(String) as unknown });
        expect(server.server.logging.consoleLevel()).toBe('error');
      },
    );
  });

  test('without corsPolicyOrigin, a cross-origin request gets no access-control-allow-origin', async () => {
    const res = await server.rest().get('/ping').set('Origin', 'https://app.example').expect(200);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();
  });
});

describe('REST API with secrets set', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startServer({ appToken: 'secret-app-token', adminToken: 'secret-admin' });
  });
  afterEach(() => {
    jest.restoreAllMocks();
  });
  afterAll(async () => {
    await server.close();
  });

  test('GET /about never shows a secret', async () => {
    const res = await server.rest().get('/about').expect(200);
    expect(Object.keys(res.body as object).sort()).toEqual(['configuration', 'description', 'id', 'name', 'started', 'version']);
    expect(res.text).not.toContain('secret-app-token');
    expect(res.text).not.toContain('secret-admin');
  });

  test('PUT /logs/levels without a bearer token gets 401 JSON', async () => {
    const res = await server
      .rest()
      .put('/logs/levels')
      .send({ level: 'debug' })
      .expect(401)
      .expect('content-type', /application\/json/);
    expect(res.body).toEqual({ errorCode: expect.any(Number) as unknown, errorDetails: expect.any(String) as unknown });
    expect(server.server.logging.consoleLevel()).toBe('error');
  });

  test.each(['Bearer wrong-token', 'Bearer secret-admin-and-more', 'Basic secret-admin', 'secret-admin', 'Bearer '])(
    'PUT /logs/levels with Authorization %j gets 401 JSON',
    async (authorization) => {
      const res = await server
        .rest()
        .put('/logs/levels')
        .set('Authorization', authorization)
        .send({ level: 'debug' })
        .expect(401)
        .expect('content-type', /application\/json/);
      expect(res.text).not.toContain('secret-admin');
      expect(server.server.logging.consoleLevel()).toBe('error');
    },
  );

  test('PUT /logs/levels with the right bearer token gets 200', async () => {
    quietConsole(server);
    const res = await server.rest().put('/logs/levels').set('Authorization', 'Bearer secret-admin').send({ level: 'warn' }).expect(200);
    expect(res.body).toEqual({ level: 'warn', was: 'error' });
    expect(server.server.logging.consoleLevel()).toBe('warn');
    server.server.logging.setConsoleLevel('error');
  });

  test('the read-only routes need no token', async () => {
    await server.rest().get('/ping').expect(200);
    await server.rest().get('/about').expect(200);
  });
});

describe('REST API with corsPolicyOrigin=https://app.example', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startServer({ corsPolicyOrigin: 'https://app.example' });
  });
  afterAll(async () => {
    await server.close();
  });

  test('that origin is echoed in access-control-allow-origin', async () => {
    const res = await server.rest().get('/ping').set('Origin', 'https://app.example').expect(200);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
  });

  test('a preflight from that origin is allowed', async () => {
    const res = await server
      .rest()
      .options('/logs/levels')
      .set('Origin', 'https://app.example')
      .set('Access-Control-Request-Method', 'PUT')
      .set('Access-Control-Request-Headers', 'content-type');
    expect(res.status).toBeLessThan(300);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
  });

  test.each(['https://evil.example', 'https://app.example.evil.example', 'http://app.example'])(
    'another origin (%s) is not echoed',
    async (origin) => {
      const res = await server.rest().get('/ping').set('Origin', origin).expect(200);
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
    },
  );
});

describe('REST API over plain HTTP (useHTTPS=false)', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startServer({ useHTTPS: 'false' });
  });
  afterAll(async () => {
    await server.close();
  });

  test('serves GET /ping and says so in /about', async () => {
    expect(server.restUrl.startsWith('http://')).toBe(true);
    const ping = await server.rest().get('/ping').expect(200);
    expect(ping.body).toEqual({ status: 'ok' });
    const about = await server.rest().get('/about').expect(200);
    expect((about.body as { configuration: unknown }).configuration).toEqual({
      wsPort: port(server.wsUrl),
      restPort: port(server.restUrl),
      useHTTPS: false,
    });
  });
});
