import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  LIFECYCLE_FILE,
  loadRelayScripts,
  loadScriptSections,
  LUA_DIR,
  RELAY_SCRIPT_NAMES,
  RELAY_SCRIPTS,
  SCRIPT_FILES,
  type ScriptSection,
} from '../../src/state/redis/script.registry';
import { EMPTYING_KEYS, LASTING_KEYS, PER_ENTITY_FAMILIES } from '../helpers/redis-keys';

const ROOT = join(__dirname, '..', '..');
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
const luaFiles = [LIFECYCLE_FILE, ...SCRIPT_FILES];
const lua = luaFiles.map((f) => readFileSync(join(LUA_DIR, f), 'utf8')).join('\n');

/** Every key name the scripts build: `P .. 'name'` and the sweep's `due('name')`, plus `schema`. */
function keyNames(): Set<string> {
  const names = new Set<string>(['schema']);
  for (const m of lua.matchAll(/P \.\. '([^']+)'|due\('([^']+)'/g)) {
    names.add((m[1] ?? m[2]) as string);
  }
  names.delete('wake');
  return names;
}

/** The backticked names of the first column of docs/redis.md's key table, `<...>` dropped. */
function documentedKeys(): Set<string> {
  const doc = read('docs/redis.md');
  const section = doc.slice(
    doc.indexOf('## Keys'),
    doc.indexOf('\n## ', doc.indexOf('## Keys') + 1),
  );
  const names = new Set<string>();
  for (const line of section.split('\n').filter((l) => l.startsWith('| `'))) {
    const first = line.split('|')[1] ?? '';
    for (const m of first.matchAll(/`([^`]+)`/g)) {
      names.add((m[1] as string).replace(/<[^>]+>$/, ''));
    }
  }
  return names;
}

/** `node id` -> `nodeId`, `envelope JSON` -> `envelopeJson`. */
function camelCase(words: string): string {
  return words
    .trim()
    .split(/\s+/)
    .map((w, i) =>
      i === 0 ? w.toLowerCase() : `${w[0]?.toUpperCase()}${w.slice(1).toLowerCase()}`,
    )
    .join('');
}

/**
 * A script header's ARGV line as names in order: `ARGV: 4 node id (opt), 5 dialect, 6.. ids`
 * gives { args: ['nodeId', 'dialect'], rest: 'ids' }. Parentheses are comments; numbering must
 * run from 4 without a gap.
 */
function declaredArgv(section: ScriptSection): { args: string[]; rest: string | null } {
  const line = /^ARGV: ([\s\S]*?)\nReply:/m.exec(section.doc)?.[1] ?? '';
  if (line === 'none of its own') {
    return { args: [], rest: null };
  }
  let bare = line.replace(/\s+/g, ' ');
  for (let before = ''; before !== bare;) {
    before = bare;
    bare = bare.replace(/\s*\([^()]*\)/g, '');
  }
  const args: string[] = [];
  let rest: string | null = null;
  for (const [i, entry] of bare.split(',').entries()) {
    const m = /^\s*(\d+)(\.\.)? (.+)$/.exec(entry);
    if (!m || Number(m[1]) !== 4 + i || rest !== null) {
      throw new Error(`${section.name}: ARGV entry "${entry}" is not "${4 + i} name"`);
    }
    if (m[2]) {
      rest = camelCase(m[3] as string);
    } else {
      args.push(camelCase(m[3] as string));
    }
  }
  return { args, rest };
}

describe('Redis scripts (src/state/transitions/*.redis.lua)', () => {
  it('should send each script the arguments its Lua reads, in the order its header names them', () => {
    for (const section of loadScriptSections()) {
      const script = RELAY_SCRIPTS.get(section.name);
      const argv = declaredArgv(section);
      const read = [...section.body.matchAll(/ARGV\[(\d+)\]/g)].map((m) => Number(m[1]));
      const last = 3 + argv.args.length;
      const unread = argv.args.filter((_, i) => !read.includes(4 + i));
      const variadic = new RegExp(`for \\w+ = ${last + 1}, #ARGV do`).test(section.body);

      expect({ script: section.name, args: script?.args, rest: script?.rest }).toEqual({
        script: section.name,
        args: argv.args,
        rest: argv.rest,
      });
      expect({
        script: section.name,
        beyond: read.filter((n) => n < 4 || n > last),
        unread,
      }).toEqual({ script: section.name, beyond: [], unread: [] });
      expect({ script: section.name, variadic }).toEqual({
        script: section.name,
        variadic: argv.rest !== null,
      });
    }
  });

  it('should define every script once, each with a header naming its KEYS, ARGV and reply', () => {
    const sections = loadScriptSections();

    expect(sections.map((s) => s.name).sort()).toEqual([...RELAY_SCRIPT_NAMES].sort());
    for (const section of sections) {
      expect({ script: section.name, header: section.doc }).toEqual({
        script: section.name,
        header: expect.stringMatching(/^KEYS: .+\nARGV: [\s\S]+\nReply: [\s\S]+/) as unknown,
      });
    }
  });

  it('should pair every .lua file with its in-memory twin', () => {
    const dir = readdirSync(LUA_DIR);

    for (const file of dir.filter((f) => f.endsWith('.lua'))) {
      expect(dir).toContain(file.replace('.redis.lua', '.memory.ts'));
    }
    expect(dir.filter((f) => f.endsWith('.lua')).sort()).toEqual([...luaFiles].sort());
  });

  it('should use only key families that docs/redis.md lists and the key-leak test drives', () => {
    const used = [...keyNames()];
    const documented = documentedKeys();
    const perEntity = used.filter((k) => k.endsWith(':')).map((k) => k.slice(0, -1));
    const fixed = used.filter((k) => !k.endsWith(':'));

    expect(used.filter((k) => !documented.has(k))).toEqual([]);
    expect(perEntity.sort()).toEqual([...PER_ENTITY_FAMILIES].sort());
    expect(fixed.sort()).toEqual([...LASTING_KEYS, ...EMPTYING_KEYS].sort());
    expect(read('docs/redis.md')).toContain('`<prefix>wake`');
  });

  it('should not spell constants TypeScript owns (context tiers, tie-cursor cap, TTL margin)', () => {
    const code = lua.replace(/--.*$/gm, '');

    expect(code.match(/\b(8192|65536|1024|86400000)\b/g)).toBeNull();
    expect(code.match(/'(8k-fast|64k-full)'/g)).toBeNull();
  });

  it('should ship every .lua file with the built relay, loaded from dist/ exactly as from src/', () => {
    const built = join(ROOT, 'dist', 'state', 'redis', 'script.registry.js');
    if (!existsSync(built)) {
      throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
    }
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const dist = require(built) as { loadRelayScripts: () => Record<string, string> };

    expect(dist.loadRelayScripts()).toEqual(loadRelayScripts());
    for (const file of luaFiles) {
      expect(read(join('dist', 'state', 'transitions', file))).toBe(
        readFileSync(join(LUA_DIR, file), 'utf8'),
      );
    }
  });

  it('should build the image with the .lua assets: nest-cli copies them, the Dockerfile ships dist/', () => {
    const nest = JSON.parse(read('nest-cli.json')) as {
      compilerOptions: { assets?: Array<{ include: string }> };
    };
    const dockerfile = read('Dockerfile');

    expect(nest.compilerOptions.assets?.map((a) => a.include)).toContain('state/transitions/*.lua');
    expect(dockerfile).toMatch(/^COPY src\/ \.\/src\/$/m);
    expect(dockerfile).toMatch(/^COPY .*nest-cli\.json.*$/m);
    expect(dockerfile).toMatch(/^COPY --from=build \/app\/dist \.\/dist$/m);
  });
});
