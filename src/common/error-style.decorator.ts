import { SetMetadata } from '@nestjs/common';

/**
 * How a route renders 400/404 errors. The legacy routes `/sink`, `/source`, `/retrieve`, `/stream/*`
 * and `/unregister` answer `{"error":"<message>"}`; everything else (and every 401/403/410/429/503)
 * answers `{"error":{"message","code",...}}` (spec §3, §4).
 */
export type ErrorStyle = 'text' | 'object';
export const ERROR_STYLE = 'relay:error-style';
export const TextErrors = (): MethodDecorator & ClassDecorator => SetMetadata(ERROR_STYLE, 'text');
