#!/usr/bin/env node
// `npm run bench`: starts the built relay (memory store) and runs the legacy and API v1 cycle
// benchmarks at 16 and 64 pipelines; prints one JSON line per run and a summary table.
// Options: --duration S (default 10), --pipelines 16,64, --protocols legacy,v1
import { parseArgs } from 'node:util';
import { cycle, startRelay, table } from './lib.mjs';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    pipelines: { type: 'string', default: '16,64' },
    protocols: { type: 'string', default: 'legacy,v1' },
    port: { type: 'string', default: '5091' },
  },
});

const relay = await startRelay(Number(values.port));
const rows = [];
try {
  for (const protocol of values.protocols.split(',')) {
    for (const pipelines of values.pipelines.split(',').map(Number)) {
      const result = await cycle({ url: relay.base, protocol, pipelines, duration: values.duration, warmup: 2 });
      process.stdout.write(`${JSON.stringify(result)}\n`);
      rows.push(result);
    }
  }
} finally {
  await relay.stop();
}
process.stdout.write(
  `\n${table(rows, ['protocol', 'pipelines', 'cyclesPerSecond', 'requestsPerSecond', 'p50Ms', 'p99Ms', 'deliveryP50Ms', 'deliveryP99Ms', 'errors'])}\n`,
);
