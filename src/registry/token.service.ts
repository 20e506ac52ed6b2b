import { Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { matchesAny } from '../common/ids';
import { RelayConfig } from '../config/relay-config';

const RELOAD_CHECK_MS = 2000;

/**
 * The compute-node shared secrets: every token from the environment plus those in an optional
 * file (one per line) that is re-read when it changes, so tokens rotate without a restart.
 * Comparison is on bytes, in constant time, against every token (no early exit).
 */
@Injectable()
export class TokenService implements OnModuleDestroy {
  private readonly logger = new Logger(TokenService.name);
  private readonly envTokens: Buffer[];
  private fileTokens: Buffer[] = [];
  private fileStamp = '';
  private timer: NodeJS.Timeout | null = null;
  private watcher: FSWatcher | null = null;

  constructor(private readonly config: RelayConfig) {
    this.envTokens = config.serverTokens.map((t) => Buffer.from(t, 'utf8'));
    if (config.serverTokensFile) {
      this.reloadFile(true);
      // Kubernetes swaps mounted Secrets through a symlink in the directory, so watch the directory
      // for a prompt reload and poll as a fallback for filesystems without change events.
      try {
        this.watcher = watch(dirname(config.serverTokensFile), () => this.reloadFile(false));
        this.watcher.unref();
      } catch {
        this.watcher = null;
      }
      this.timer = setInterval(() => this.reloadFile(false), RELOAD_CHECK_MS);
      this.timer.unref();
    }
  }

  onModuleDestroy(): void {
    if (this.timer) {
      clearInterval(this.timer);
    }
    this.watcher?.close();
  }

  /** True when no token is configured at all (every caller accepted, as upstream). */
  get open(): boolean {
    return (
      this.envTokens.length === 0 && this.fileTokens.length === 0 && !this.config.serverTokensFile
    );
  }

  /** A token a node inside this process can send (the demo node), or null when none is set. */
  anyToken(): string | null {
    const token = this.envTokens[0] ?? this.fileTokens[0];
    return token ? token.toString('utf8') : null;
  }

  /** Checks a header value; the header's raw bytes are compared (latin1 keeps them as sent). */
  accepts(header: string | string[] | undefined): boolean {
    if (this.open) {
      return true;
    }
    if (typeof header !== 'string') {
      return false;
    }
    const trimmed = header.trim();
    if (trimmed === '') {
      return false;
    }
    return matchesAny(Buffer.from(trimmed, 'latin1'), [...this.envTokens, ...this.fileTokens]);
  }

  private reloadFile(initial: boolean): void {
    const path = this.config.serverTokensFile;
    if (!path) {
      return;
    }
    try {
      const st = statSync(path);
      const stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
      if (stamp === this.fileStamp) {
        return;
      }
      const tokens = readFileSync(path, 'utf8')
        .split(/[\n,]/)
        .map((t) => t.trim())
        .filter((t) => t !== '' && !t.startsWith('#'));
      this.fileTokens = tokens.map((t) => Buffer.from(t, 'utf8'));
      this.fileStamp = stamp;
      this.logger.log({
        msg: initial ? 'node tokens loaded from file' : 'node tokens reloaded from file',
        count: tokens.length,
      });
    } catch (error) {
      this.logger.warn({
        msg: 'node token file unreadable; keeping the previous tokens',
        code: (error as NodeJS.ErrnoException).code,
      });
    }
  }
}
