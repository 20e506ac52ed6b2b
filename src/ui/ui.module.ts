import {
  Controller,
  Get,
  Header,
  Module,
  RequestMethod,
  type DynamicModule,
  type MiddlewareConsumer,
  type NestModule,
} from '@nestjs/common';
import { ServeStaticModule } from '@nestjs/serve-static';
import { existsSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Cors, ErrorDialect } from '../common/route-facts';
import { precompressedAssets } from './precompressed.middleware';

/** Where the browser UI lives: `public/` next to `dist/` (works from src/ under Jest too). */
export function publicDir(): string {
  const candidates = [
    join(__dirname, '..', '..', 'public'),
    join(__dirname, '..', '..', '..', 'public'),
  ];
  return candidates.find((dir) => existsSync(join(dir, 'index.html'))) ?? (candidates[0] as string);
}

/** Brotli/gzip copies of the bundle, ahead of the plain static files. */
@Module({})
class UiAssetsModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer
      .apply(precompressedAssets(publicDir()))
      .forRoutes({ path: 'static/{*path}', method: RequestMethod.ALL });
  }
}

/** `GET /`: the page, read once at boot (no filesystem access per request). */
@Controller()
@ErrorDialect('object')
@Cors('none')
class UiController {
  private readonly html = readFileSync(join(publicDir(), 'index.html'), 'utf8');

  @Get(['/', 'index.html'])
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-cache')
  page(): string {
    return this.html;
  }
}

/**
 * Serves the page at `/` and the built assets under `/static/*` (scripts/build-ui.mjs). Only those
 * paths touch the UI: unknown paths stay 404, no API route is ever shadowed, and API requests never
 * cost a filesystem lookup (serve-static mounted at `/` would `stat` every GET).
 */
@Module({})
export class UiModule {
  static register(enabled: boolean): DynamicModule {
    if (!enabled) {
      return { module: UiModule };
    }
    return {
      module: UiModule,
      controllers: [UiController],
      imports: [
        UiAssetsModule,
        ServeStaticModule.forRoot({
          rootPath: join(publicDir(), 'static'),
          serveRoot: '/static',
          // serve-static always registers a page route under serveRoot; pointing it at the bundle
          // itself, which the static handler mounted first always answers, keeps it inert.
          renderPath: '/app.js',
          serveStaticOptions: {
            index: false,
            fallthrough: true,
            setHeaders: (res: ServerResponse, path: string) => {
              const immutable = /\.[0-9a-f]{8,}\.(js|css|svg|png|woff2)$/.test(path);
              res.setHeader(
                'Cache-Control',
                immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
              );
            },
          },
        }),
      ],
    };
  }
}
