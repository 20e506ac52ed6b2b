import { IsOptional } from 'class-validator';
import { BoolEnv, TextEnv } from './env-kinds';

/** Who may read /metrics (metrics/). */
export class MetricsEnv {
  @TextEnv(
    'TOKENPLACE_METRICS_TOKEN',
    'Bearer token required by /metrics; unset: open; set but empty: always 401',
    4096,
    true,
  )
  @IsOptional()
  metricsToken?: string;

  @BoolEnv('TOKENPLACE_METRICS_DISABLED', 'When on, /metrics always answers 401')
  metricsDisabled = false;
}

export interface MetricsSettings {
  readonly metricsToken: string | undefined;
  readonly metricsDisabled: boolean;
}

export function metricsSettings(s: MetricsEnv): MetricsSettings {
  return {
    metricsToken: s.metricsToken === undefined ? undefined : s.metricsToken.trim(),
    metricsDisabled: s.metricsDisabled,
  };
}
