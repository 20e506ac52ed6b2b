import { Module, type DynamicModule } from '@nestjs/common';
import { ServeStaticModule } from '@nestjs/serve-static';
import { existsSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';

/** Where the browser UI lives: `public/` next to `dist/` (works from src/ under Jest too). */
export function publicDir(): string {
  const candidates = [
    join(__dirname, '..', '..', 'public'),
    join(__dirname, '..', '..', '..', 'public'),
  ];
  return candidates.find((dir) => existsSync(join(dir, 'index.html'))) ?? (candidates[0] as string);
}

/**
 * Serves `public/` at `/` (index) and `/static/*` (assets). Only `/` renders the page: unknown
 * paths stay 404, and no API route is ever shadowed.
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
