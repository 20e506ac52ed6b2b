import { Inject, Injectable } from '@nestjs/common';
import { CLOCK, type Clock } from '../common/clock';
import { STATE_STORE, type StateStore } from '../state/state-store';
import type { NodeSummary } from '../state/state.types';

/** Most nodes any public read route lists (`/relay/diagnostics`; `/healthz` shows fewer). */
export const LISTED_NODES = 32;
/** How long one reading of the registry serves every public reader. */
const MAX_AGE_MS = 1000;

/** One reading of the registry, and what was rendered from it (each once). */
export class RegistryView {
  private readonly rendered = new Map<string, unknown>();

  constructor(
    /** When it was read (ages in the public views are as of this instant). */
    readonly at: number,
    readonly summary: NodeSummary,
    readonly generation: number,
  ) {}

  /** `render()` once per reading, whoever asks. */
  memo<T>(key: string, render: () => T): T {
    if (!this.rendered.has(key)) {
      this.rendered.set(key, render());
    }
    return this.rendered.get(key) as T;
  }
}

/**
 * The registry as `/healthz` and `/relay/diagnostics` show it: one bounded store read
 * ({@link StateStore.summarizeNodes}) at most once a second, shared by every reader and every
 * replica's route, so the public read routes cost the same whatever strangers registered. A node
 * joining or leaving through this process makes the next reader read again.
 */
@Injectable()
export class RegistryViewService {
  private current: RegistryView | null = null;
  private reading: Promise<RegistryView> | null = null;
  private generation = 0;

  constructor(
    @Inject(STATE_STORE) private readonly store: StateStore,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /** The current reading, read again when older than a second or after a local change. */
  view(): Promise<RegistryView> {
    const now = this.clock.now();
    const current = this.current;
    if (
      current !== null &&
      current.generation === this.generation &&
      now - current.at < MAX_AGE_MS &&
      now >= current.at
    ) {
      return Promise.resolve(current);
    }
    this.reading ??= this.read().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  /** A node joined or left through this process. */
  changed(): void {
    this.generation += 1;
  }

  private async read(): Promise<RegistryView> {
    const generation = this.generation;
    const at = this.clock.now();
    const summary = await this.store.summarizeNodes({ limit: LISTED_NODES, now: at });
    const view = new RegistryView(at, summary, generation);
    this.current = view;
    return view;
  }
}
