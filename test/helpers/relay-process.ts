import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const MAIN_JS = join(__dirname, '..', '..', 'dist', 'main.js');

export interface RelayProcess {
  child: ChildProcess;
  baseUrl: string;
  port: number;
  /** Every JSON log line the process printed so far. */
  logs: Array<Record<string, unknown>>;
  /** Everything the process wrote to stderr so far (Node's own warnings go there). */
  stderr: () => string;
  /** Resolves with the exit code (or the signal name). */
  exited: Promise<number | string>;
}

/**
 * Starts the built relay (`node dist/main.js`) on an ephemeral port and resolves once it logs
 * "relay listening". `npm test` builds dist/ first.
 */
export async function startRelayProcess(
  env: Record<string, string>,
  args: string[] = [],
  options: {
    /** Runs the relay through another program (e.g. a shell that joins a cgroup, then execs). */
    wrap?: (command: string, args: string[]) => [string, string[]];
    /** How long it may take to log "relay listening" (20 s). */
    startTimeoutMs?: number;
  } = {},
): Promise<RelayProcess> {
  if (!existsSync(MAIN_JS)) {
    throw new Error(`${MAIN_JS} is missing: run \`npm run build\` (npm test does) first`);
  }
  const wrap = options.wrap ?? ((command: string, rest: string[]) => [command, rest]);
  const [command, commandArgs] = wrap(process.execPath, [MAIN_JS, ...args]);
  const child = spawn(command, commandArgs, {
    env: {
      PATH: process.env.PATH ?? '',
      RELAY_HOST: '127.0.0.1',
      RELAY_PORT: '0',
      TOKENPLACE_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  let buffer = '';
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`relay did not start: ${stderr}`));
    }, options.startTimeoutMs ?? 20_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let nl = buffer.indexOf('\n');
      while (nl !== -1) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (entry.msg === 'relay listening' && typeof entry.port === 'number') {
            clearTimeout(timer);
            resolve(entry.port);
          }
        } catch {
          // not a JSON line
        }
        nl = buffer.indexOf('\n');
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`relay exited (${code}) before listening: ${stderr}`));
    });
  });
  return {
    child,
    baseUrl: `http://127.0.0.1:${port}`,
    port,
    logs,
    stderr: () => stderr,
    exited,
  };
}
