import { UseFilters } from '@nestjs/common';
import { LegacyTextExceptionFilter, OpenAiExceptionFilter } from './relay-exception.filter';

/**
 * How a route renders 400/404 errors. The legacy routes `/sink`, `/source`, `/retrieve`, `/stream/*`
 * and `/unregister` answer `{"error":"<message>"}`; everything else (and every 401/403/410/429/503)
 * answers `{"error":{"message","code",...}}` (spec §3, §4); the OpenAI-compatible gateway answers
 * `{"error":{"message","type"[,"param"][,"code"]}}` (gateway.md §2.1).
 */
export type ErrorStyle = 'text' | 'object' | 'openai';

/** Binds the legacy text-shaped error filter to a controller or route. */
export const TextErrors = (): MethodDecorator & ClassDecorator =>
  UseFilters(LegacyTextExceptionFilter);

/** Binds the OpenAI error envelope to a controller or route (the gateway). */
export const OpenAiErrors = (): MethodDecorator & ClassDecorator =>
  UseFilters(OpenAiExceptionFilter);
