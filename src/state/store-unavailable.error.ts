/** The store cannot serve right now (Redis down, slow or read-only); answered with 503 + Retry-After. */
export class StoreUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreUnavailableError';
  }
}
