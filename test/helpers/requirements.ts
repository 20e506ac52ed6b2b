/**
 * Tests that need a machine dependency (Redis, Chromium, chart tools) find it on the machine or via
 * an env var, and say loudly when they skip. CI sets the matching TOKENPLACE_REQUIRE_* variable,
 * which turns a skip into a failure.
 */
export function requirement(
  name: string,
  available: boolean,
  requireVar: string,
  hint: string,
): boolean {
  if (available) {
    return true;
  }
  if (process.env[requireVar] === '1') {
    throw new Error(`${name} is required (${requireVar}=1) but not available: ${hint}`);
  }
  process.stderr.write(
    `\n*** SKIPPING ${name} tests: ${hint} (set ${requireVar}=1 to make this an error) ***\n\n`,
  );
  return false;
}

/** `describe` when the requirement holds, `describe.skip` (announced) otherwise. */
export function describeIf(ok: boolean): jest.Describe {
  return ok ? describe : describe.skip;
}
