/** A wait that something else may end early. */
export interface WaitListener {
  stop(): void;
}

/**
 * What ends a wait before its deadline, without an `AbortSignal`'s EventTarget: one slot for the
 * one wait in progress (a request waits for one thing at a time). `CallerWatch` is one.
 */
export interface WaitSignal {
  readonly aborted: boolean;
  /**
   * The wait to stop when this aborts, set by each wait. A wait that ended otherwise may stay
   * here until the next one replaces it: stopping it again does nothing. (The wait keeps no
   * reference back, so nothing here reaches the caller's request.)
   */
  listener: WaitListener | null;
}

/** Either kind of stop signal a wait accepts. */
export type StopSignal = AbortSignal | WaitSignal;
