/**
 * Polls until `check` returns a value, for waits on other processes (a relay exiting, Redis
 * reconnecting) that no injected clock can speed up. Throws after `tries` attempts.
 */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  tries = 300,
  everyMs = 50,
): Promise<T> {
  for (let i = 0; i < tries; i += 1) {
    const value = await check();
    if (value !== undefined) {
      return value;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error('condition never held');
}
