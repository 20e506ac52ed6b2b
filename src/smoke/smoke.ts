import { runCli } from '../cli/smoke';

/**
 * `/app/dist/smoke/smoke.js`: the smoke check's path in the image, which the Dockerfile, the
 * chart's test hook and the staging runbook name. The CLI itself is `src/cli/smoke.ts`.
 */
runCli();
