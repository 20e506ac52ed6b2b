import { Controller, Get, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Cors, ErrorDialect } from '../../src/common/route-facts';
import { RouteFactsModule, RouteTable } from '../../src/edge/route-table';
import { createTestApp, type TestApp } from '../helpers/test-app';
import { raw } from './api-v1-fixtures';

/** Routes the live router serves: `GET /path` for each method of each route layer. */
function servedRoutes(t: TestApp): string[] {
  type Layer = { route?: { path: string; methods: Record<string, boolean> } };
  const instance = t.app.getHttpAdapter().getInstance() as { router: { stack: Layer[] } };
  return instance.router.stack.flatMap(({ route }) =>
    route === undefined
      ? []
      : Object.keys(route.methods).map((m) => `${m.toUpperCase()} ${route.path}`),
  );
}

/** The UI's asset routes are static files (serve-static and the precompressed middleware). */
const STATIC_ASSETS = /^\S+ \/static\//;

/** Shape of a 400 in each dialect. */
const MALFORMED = {
  text: { error: 'Malformed JSON body' },
  object: { error: { message: 'Malformed JSON body', code: 400 } },
  openai: { error: { message: 'Malformed JSON body', type: 'invalid_request_error' } },
};

const BROWSER = { Origin: 'https://token.place', 'Access-Control-Request-Method': 'POST' };

/** Paths a browser policy once named but no controller serves (spec 2.3 lists served routes). */
const UNSERVED = [
  '/v1/relay/requests',
  '/v1/relay/requests/cancel',
  '/v1/relay/responses/retrieve',
  '/v1/relay/servers/next',
  '/api/v1/community/no-such-route',
];

/** The legacy routes that answer 400/404 as `{"error":"<message>"}` (spec 3.5-3.8, 3.10). */
const TEXT_ROUTES = ['/sink', '/unregister', '/source', '/stream/source', '/retrieve'];

describe('Route facts declared on the controllers', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp();
  });

  afterAll(async () => {
    await t.close();
  });

  it('should know a declared error dialect and CORS policy for every route the router serves', () => {
    const declared = new Map(
      t.app
        .get(RouteTable)
        .routes()
        .map((r) => [`${r.method} ${r.path}`, r]),
    );
    const served = servedRoutes(t).filter((r) => !STATIC_ASSETS.test(r));

    expect(served.length).toBeGreaterThan(60);
    const lacking = served.filter((route) => {
      const facts = declared.get(route);
      return facts?.style === undefined || facts.cors === undefined;
    });
    expect(lacking).toEqual([]);
    expect([...declared.keys()].sort()).toEqual([...served].sort());
  });

  it('should answer every served route in its declared dialect before routing, and preflights by its declared CORS', async () => {
    const table = t.app.get(RouteTable);
    for (const route of table.routes()) {
      const path = route.path.replace(':id', 'some-model');
      const preflight = await raw(t, 'OPTIONS', path, { headers: BROWSER });
      const cors = table.lookup(path)?.cors;
      expect([route.path, preflight.status === 204]).toEqual([route.path, cors === 'public']);
      if (route.method === 'POST') {
        const res = await raw(t, 'POST', path, {
          headers: { 'content-type': 'application/json' },
          body: '{"x":',
        });
        // A lenient body counts as missing: the route answers its own 400 (spec 4.4.1).
        const expected = route.body.lenient
          ? { error: { message: 'Invalid request data', code: 400 } }
          : MALFORMED[route.style ?? 'object'];
        expect([route.path, res.status, res.body]).toEqual([route.path, 400, expected]);
      }
    }
  });

  it.each(UNSERVED)(
    'should send no CORS headers on %s, which no controller serves',
    async (path) => {
      const preflight = await raw(t, 'OPTIONS', path, { headers: BROWSER });
      const post = await raw(t, 'POST', path, {
        headers: { 'content-type': 'application/json', Origin: 'https://x.example' },
        body: '{}',
      });

      expect(preflight.status).toBe(404);
      expect(post.status).toBe(404);
      for (const res of [preflight, post]) {
        expect(res.headers['access-control-allow-origin']).toBeUndefined();
        expect(res.headers['access-control-allow-methods']).toBeUndefined();
        expect(res.headers['access-control-expose-headers']).toBeUndefined();
      }
    },
  );

  it('should keep CORS on every sub-path of /api/v1/models and /v1/models (spec 2.3)', async () => {
    for (const path of ['/api/v1/models/org/model', '/v1/models/a/b']) {
      const preflight = await raw(t, 'OPTIONS', path, { headers: BROWSER });
      const get = await raw(t, 'GET', path, { headers: { Origin: 'https://x.example' } });

      expect(preflight.status).toBe(204);
      expect(get.headers['access-control-allow-origin']).toBe('*');
    }
    const v2 = await raw(t, 'OPTIONS', '/api/v2/models/a', { headers: BROWSER });
    expect(v2.headers['access-control-allow-origin']).toBeUndefined();
  });

  it.each(TEXT_ROUTES)(
    'should answer malformed JSON on %s in the route text dialect, before routing',
    async (path) => {
      const res = await raw(t, 'POST', path, {
        headers: { 'content-type': 'application/json' },
        body: '{"server_public_key":',
      });

      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'Malformed JSON body' });
    },
  );

  it('should keep the object dialect for framework errors the text dialect does not cover', async () => {
    const wrongType = await raw(t, 'POST', '/sink', {
      headers: { 'content-type': 'text/plain' },
      body: 'hello',
    });
    const faucet = await raw(t, 'POST', '/faucet', {
      headers: { 'content-type': 'application/json' },
      body: '{"x":',
    });

    expect(wrongType.status).toBe(415);
    expect(wrongType.body).toEqual({
      error: { message: 'Content-Type must be application/json', code: 415 },
    });
    expect(faucet.status).toBe(400);
    expect(faucet.body).toEqual({ error: { message: 'Malformed JSON body', code: 400 } });
  });
});

describe('Route facts at boot', () => {
  @Controller('naked')
  class NakedController {
    @Get()
    read(): object {
      return {};
    }
  }

  @Controller('half')
  @ErrorDialect('object')
  class HalfController {
    @Post('write')
    write(): object {
      return {};
    }

    @Get('read')
    @Cors('none')
    read(): object {
      return {};
    }
  }

  @Module({ imports: [RouteFactsModule], controllers: [NakedController, HalfController] })
  class UndeclaredModule {}

  it('should refuse to boot while a route lacks its error dialect or CORS policy, naming it', async () => {
    const app = await NestFactory.create(UndeclaredModule, { logger: false });

    await expect(app.init()).rejects.toThrow(
      [
        'Routes without their facts:',
        'GET /naked (NakedController.read) declares no @ErrorDialect and @Cors',
        'POST /half/write (HalfController.write) declares no @Cors',
      ].join('\n'),
    );
    await app.close();
  });
});
