import { UseFilters } from '@nestjs/common';
import { LegacyTextExceptionFilter, OpenAiExceptionFilter } from './relay-exception.filter';

export type { ErrorStyle } from './error-style';

/** Binds the legacy text-shaped error filter to a controller or route. */
export const TextErrors = (): MethodDecorator & ClassDecorator =>
  UseFilters(LegacyTextExceptionFilter);

/** Binds the OpenAI error envelope to a controller or route (the gateway). */
export const OpenAiErrors = (): MethodDecorator & ClassDecorator =>
  UseFilters(OpenAiExceptionFilter);
