import { Transform } from 'class-transformer';
import { IsIn } from 'class-validator';
import { Env } from './env.decorator';

/** The root logger's level (common/logging.ts). */
export class LoggingEnv {
  @Env(
    'TOKENPLACE_LOG_LEVEL',
    'trace, debug, info, warn, error, fatal or silent (JSON lines on stdout)',
  )
  @Transform(({ value }: { value: unknown }) =>
    typeof value === 'string'
      ? value
          .trim()
          .toLowerCase()
          .replace(/^warning$/, 'warn')
      : value,
  )
  @IsIn(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
  logLevel = 'info';
}

export interface LoggingSettings {
  readonly logLevel: string;
}
