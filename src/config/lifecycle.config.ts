import { NumberEnv } from './env-kinds';

/** The process's life: the drain after SIGTERM, the hard exit, the upkeep timer (boot/, lifecycle/, state/). */
export class LifecycleEnv {
  @NumberEnv(
    'TOKENPLACE_RELAY_DRAIN_SECONDS',
    'After SIGTERM, keep serving this long with /healthz at 503 so load balancers stop routing',
    0,
    300,
  )
  drainSeconds = 5;

  @NumberEnv(
    'TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS',
    'Hard limit from the signal to exit; open connections are closed then',
    1,
    900,
  )
  shutdownGraceSeconds = 20;

  @NumberEnv(
    'TOKENPLACE_RELAY_SWEEP_INTERVAL_SECONDS',
    'How often expiry and eviction run on a timer (they also run on requests)',
    0.05,
    60,
  )
  sweepIntervalSeconds = 1;
}

export interface LifecycleSettings {
  readonly drainMs: number;
  readonly shutdownGraceMs: number;
  readonly sweepIntervalMs: number;
}

export function lifecycleSettings(s: LifecycleEnv): LifecycleSettings {
  return {
    drainMs: s.drainSeconds * 1000,
    shutdownGraceMs: s.shutdownGraceSeconds * 1000,
    sweepIntervalMs: s.sweepIntervalSeconds * 1000,
  };
}

export function lifecycleProblems(s: LifecycleEnv): string[] {
  return s.shutdownGraceSeconds <= s.drainSeconds
    ? [
        `TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS (${s.shutdownGraceSeconds}) must be greater than TOKENPLACE_RELAY_DRAIN_SECONDS (${s.drainSeconds})`,
      ]
    : [];
}
