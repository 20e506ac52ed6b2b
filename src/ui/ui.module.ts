import {
  Module,
  RequestMethod,
  type DynamicModule,
  type MiddlewareConsumer,
  type NestModule,
} from '@nestjs/common';
import { ServeStaticModule } from '@nestjs/serve-static';
import { existsSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
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

/**
 * Serves `public/` at `/` (index) and `/static/*` (assets, built by scripts/build-ui.mjs). Only
 * `/` renders the page: unknown paths stay 404, and no API route is ever shadowed.
 */
@Module({})
export class UiModule {
  static register(enabled: boolean): DynamicModule {
    if (!enabled) {
      return { module: UiModule };
    }
    return {
      module: UiModule,
      imports: [
        UiAssetsModule,
        ServeStaticModule.forRoot({
          rootPath: publicDir(),
          renderPath: '/',
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
