#!/usr/bin/env node
// Compares two V8 heap snapshots of one relay process (bench/held.mjs --snapshots: at 0 held and at
// N held) and attributes the difference per held connection: objects grouped by V8 node type and
// constructor, closures by function and source line (mapped back to src/ through dist's source maps
// when the snapshot's scripts are a build of this repository), with count and bytes per connection.
// Self sizes only (what each object itself occupies); V8 heap only: sockets' native buffers and
// OpenSSL keys appear as the small JS wrappers that point to them.
//
// usage: node --max-old-space-size=8192 bench/heap-diff.mjs BASE.heapsnapshot HELD.heapsnapshot
//          --per N [--top 40] [--min-bytes 8] [--json] [--retainers REGEX]
// --retainers lists, for the objects new since BASE whose group matches REGEX, what holds them.
import { readFileSync, existsSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { cli } from './lib.mjs';

const values = cli('usage: node bench/heap-diff.mjs BASE.heapsnapshot HELD.heapsnapshot --per N [--top 40] [--min-bytes 8] [--json] [--retainers REGEX]', {
  per: { type: 'string', default: '1' },
  top: { type: 'string', default: '40' },
  'min-bytes': { type: 'string', default: '8' },
  json: { type: 'boolean', default: false },
  retainers: { type: 'string', default: '' },
}, { positionals: true });
const files = values.positionals;
if (files.length !== 2) {
  process.stderr.write('two .heapsnapshot files expected (base, held)\n');
  process.exit(2);
}
const per = Number(values.per);

const maps = new Map();
/** dist/x.js:line → src/x.ts:line through the build's source map (null when there is none). */
function toSource(path, line, column) {
  if (!path.includes('/dist/') || !path.endsWith('.js')) return null;
  if (!maps.has(path)) {
    const file = path.replace(/^file:\/\//, '');
    maps.set(path, existsSync(`${file}.map`) ? new SourceMap(JSON.parse(readFileSync(`${file}.map`, 'utf8'))) : null);
  }
  const entry = maps.get(path)?.findEntry(line, column);
  if (!entry || entry.originalSource === undefined) return null;
  return `${entry.originalSource.replace(/^(\.\.\/)+/, '').replace(/^.*?\bsrc\//, 'src/')}:${entry.originalLine + 1}`;
}

function shortPath(path) {
  return path.replace(/^file:\/\//, '').replace(/^.*node_modules\//, 'nm:').replace(/^.*\/dist\//, 'dist/');
}

/** Aggregates one snapshot: group key → { count, bytes }. */
function load(file, base = null) {
  const snap = JSON.parse(readFileSync(file, 'utf8'));
  const meta = snap.snapshot.meta;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const types = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const [iType, iName, iId, iSize, iEdges] = ['type', 'name', 'id', 'self_size', 'edge_count'].map((f) => meta.node_fields.indexOf(f));
  const [eType, eName, eTo] = ['type', 'name_or_index', 'to_node'].map((f) => meta.edge_fields.indexOf(f));
  const { nodes, edges, strings } = snap;
  const firstEdge = new Uint32Array(nodes.length / nf + 1);
  for (let i = 0, e = 0; i < nodes.length / nf; i += 1) {
    firstEdge[i] = e;
    e += nodes[i * nf + iEdges] * ef;
    firstEdge[i + 1] = e;
  }
  const edge = (node, name) => {
    for (let e = firstEdge[node]; e < firstEdge[node + 1]; e += ef) {
      const t = edgeTypes[edges[e + eType]];
      if ((t === 'internal' || t === 'property' || t === 'context') && strings[edges[e + eName]] === name) return edges[e + eTo] / nf;
    }
    return -1;
  };
  // Closure locations: [node index, script id, line, column].
  const where = new Map();
  const locs = snap.locations ?? [];
  for (let i = 0; i < locs.length; i += 4) where.set(locs[i] / nf, [locs[i + 2], locs[i + 3]]);
  const contextVars = (node) => {
    const names = [];
    for (let e = firstEdge[node]; e < firstEdge[node + 1]; e += ef) {
      if (edgeTypes[edges[e + eType]] === 'context') names.push(strings[edges[e + eName]]);
    }
    return names.slice(0, 6).join(',') + (names.length > 6 ? ',...' : '');
  };
  const closureKey = (i, depth = 0) => {
    const name = strings[nodes[i * nf + iName]];
    if (name === 'native_bind' && depth === 0) {
      const target = edge(i, 'bound_function');
      return target >= 0 ? `bound → ${closureKey(target, 1)}` : 'native_bind';
    }
    let path = null;
    const shared = edge(i, 'shared');
    const script = shared >= 0 ? edge(shared, 'script') : -1;
    const scriptName = script >= 0 ? edge(script, 'name') : -1;
    if (scriptName >= 0) path = strings[nodes[scriptName * nf + iName]];
    const [line, column] = where.get(i) ?? [-1, -1];
    if (path === null || line < 0) {
      const context = edge(i, 'context');
      return `${name || '(anonymous)'} [no script; context: ${context >= 0 ? contextVars(context) || 'none' : 'none'}]`;
    }
    return `${name || '(anonymous)'} ${toSource(path, line, column) ?? `${shortPath(path)}:${line + 1}`}`;
  };
  const groups = new Map();
  const byType = new Map();
  const keys = new Array(nodes.length / nf);
  for (let i = 0; i < nodes.length / nf; i += 1) {
    const type = types[nodes[i * nf + iType]];
    const name = strings[nodes[i * nf + iName]];
    const size = nodes[i * nf + iSize];
    let key;
    if (type === 'object' && name === 'system / Context') {
      key = `context {${contextVars(i)}}`;
    } else if (type === 'object') {
      key = `object ${name}`;
    } else if (type === 'closure') {
      key = `closure ${closureKey(i)}`;
    } else if (type === 'native') {
      key = `native ${name}`;
    } else if (type === 'string' || type === 'concatenated string' || type === 'sliced string') {
      key = `(${type})`;
    } else {
      key = `(${type}) ${name.length > 60 ? `${name.slice(0, 57)}...` : name}`;
    }
    keys[i] = key;
    const g = groups.get(key) ?? { count: 0, bytes: 0 };
    g.count += 1;
    g.bytes += size;
    groups.set(key, g);
    const t = byType.get(type) ?? { count: 0, bytes: 0 };
    t.count += 1;
    t.bytes += size;
    byType.set(type, t);
  }
  const ids = new Set();
  for (let i = 0; i < nodes.length / nf; i += 1) ids.add(nodes[i * nf + iId]);
  // Who holds the objects that are new since the base snapshot (V8 keeps ids across snapshots of one process).
  const retainers = new Map();
  if (base && values.retainers) {
    const re = new RegExp(values.retainers);
    const target = new Uint8Array(nodes.length / nf);
    for (let i = 0; i < target.length; i += 1) target[i] = !base.ids.has(nodes[i * nf + iId]) && re.test(keys[i]) ? 1 : 0;
    for (let p = 0; p < target.length; p += 1) {
      for (let e = firstEdge[p]; e < firstEdge[p + 1]; e += ef) {
        const to = edges[e + eTo] / nf;
        const t = edgeTypes[edges[e + eType]];
        if (!target[to] || t === 'weak' || t === 'shortcut') continue;
        const name = t === 'element' || t === 'hidden' ? `[${t}]` : `.${strings[edges[e + eName]]}`;
        const k = `${keys[to]} ← ${keys[p]} ${name}`;
        const r = retainers.get(k) ?? { count: 0, bytes: 0 };
        r.count += 1;
        r.bytes += nodes[to * nf + iSize];
        retainers.set(k, r);
      }
    }
  }
  return { groups, byType, ids, retainers };
}

const a = load(files[0]);
const b = load(files[1], a);
function diff(x, y) {
  const out = [];
  for (const key of new Set([...x.keys(), ...y.keys()])) {
    const p = x.get(key) ?? { count: 0, bytes: 0 };
    const q = y.get(key) ?? { count: 0, bytes: 0 };
    out.push({ key, count: (q.count - p.count) / per, bytes: (q.bytes - p.bytes) / per });
  }
  return out.sort((m, n) => n.bytes - m.bytes);
}
const types = diff(a.byType, b.byType);
const groups = diff(a.groups, b.groups);
const total = types.reduce((s, r) => s + r.bytes, 0);
if (values.json) {
  process.stdout.write(`${JSON.stringify({ per, totalBytesPerConnection: total, types, groups: groups.filter((g) => Math.abs(g.bytes) >= Number(values['min-bytes'])) })}\n`);
  process.exit(0);
}
const fmt = (n, d = 2) => (Math.round(n * 10 ** d) / 10 ** d).toString();
process.stdout.write(`V8 heap, self sizes, per held connection (N = ${per}): ${fmt(total, 0)} bytes (${fmt(total / 1024)} KiB)\n\nby V8 node type:\n`);
process.stdout.write('| type | count | bytes |\n| --- | --- | --- |\n');
for (const r of types.filter((t) => Math.abs(t.bytes) >= 1)) process.stdout.write(`| ${r.key} | ${fmt(r.count)} | ${fmt(r.bytes, 0)} |\n`);
process.stdout.write(`\ntop ${values.top} groups (constructor, closure with its source line, native, string kind):\n`);
process.stdout.write('| group | count | bytes |\n| --- | --- | --- |\n');
for (const r of groups.filter((g) => Math.abs(g.bytes) >= Number(values['min-bytes'])).slice(0, Number(values.top))) {
  process.stdout.write(`| ${r.key.replace(/\|/g, '\\|')} | ${fmt(r.count)} | ${fmt(r.bytes, 0)} |\n`);
}
if (values.retainers) {
  process.stdout.write(`\nwho holds the new objects whose group matches /${values.retainers}/ (per connection; an object held twice counts twice):\n`);
  process.stdout.write('| object ← holder .edge | count | bytes |\n| --- | --- | --- |\n');
  for (const [k, r] of [...b.retainers].sort((x, y) => y[1].bytes - x[1].bytes).slice(0, Number(values.top))) {
    process.stdout.write(`| ${k.replace(/\|/g, '\\|')} | ${fmt(r.count / per)} | ${fmt(r.bytes / per, 0)} |\n`);
  }
}
