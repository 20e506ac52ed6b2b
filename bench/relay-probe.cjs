// Preloaded into a relay started by bench/lib.mjs `startRelay(..., { probe: true })`
// (`node --expose-gc -r bench/relay-probe.cjs dist/main.js`, with an IPC channel). It changes nothing
// the relay does unless an option below asks for it; it answers the bench's questions from inside:
//   IPC { id, cmd: 'gc' }                full GC (twice), then the `memory` answer
//   IPC { id, cmd: 'memory' }            process.memoryUsage() and V8 heap statistics, bytes
//   IPC { id, cmd: 'snapshot', path }    v8.writeHeapSnapshot(path) (V8 collects garbage first)
//   IPC { id, cmd: 'eld' }               event-loop delay since the last 'eld' (monitorEventLoopDelay,
//                                        1 ms resolution, started with the process), ms; then reset
//   IPC { id, cmd: 'trace' }             the Redis trace so far (BENCH_PROBE_TRACE=1), then cleared
//   IPC { id, cmd: 'keygen' }            RSA keygens asked for so far, and their summed wait (ms)
// Options (environment of the relay process):
//   BENCH_PROBE_KEYS=<file of PEM private keys>  crypto.generateKeyPair('rsa', ...) answers at once
//       with a distinct KeyObject parsed from the next key of the file (cycling). The memory of a held
//       gateway chat stays the same (one EVP_PKEY and one public-key string per chat); the CPU of a
//       keygen disappears. Used to hold 20,000 gateway chats without 20 minutes of keygen, and to see
//       what a chat costs once keygen is off the request path.
//   BENCH_PROBE_TRACE=1  times every relay Lua script on the ioredis command connection (sent, answered,
//       commands already in flight on that connection) and every wake-up message received on the
//       subscriber connection, in epoch milliseconds (performance.timeOrigin + now, comparable across
//       processes on one machine).
'use strict';
const v8 = require('node:v8');
const crypto = require('node:crypto');
const { readFileSync } = require('node:fs');
const { dirname, join } = require('node:path');
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');

const eld = monitorEventLoopDelay({ resolution: 1 });
eld.enable();
const ms = (ns) => Math.round(ns / 1e4) / 100;
const epoch = () => performance.timeOrigin + performance.now();

// Every RSA keygen the relay asks for is counted, with the time until its callback ran.
const keygen = { calls: 0, waitMs: 0 };
const realKeygen = crypto.generateKeyPair;
let premade = null;
if (process.env.BENCH_PROBE_KEYS) {
  premade = readFileSync(process.env.BENCH_PROBE_KEYS, 'utf8').match(/-----BEGIN PRIVATE KEY-----[^-]+-----END PRIVATE KEY-----\n?/g) ?? [];
  if (premade.length === 0) throw new Error(`no PEM private keys in ${process.env.BENCH_PROBE_KEYS}`);
}
let nextKey = 0;
crypto.generateKeyPair = function counted(type, options, callback) {
  if (type !== 'rsa' || typeof callback !== 'function' || options?.publicKeyEncoding || options?.privateKeyEncoding) {
    return realKeygen.call(this, type, options, callback);
  }
  keygen.calls += 1;
  const t0 = performance.now();
  const done = (...args) => {
    keygen.waitMs += performance.now() - t0;
    callback(...args);
  };
  if (premade === null) {
    return realKeygen.call(this, type, options, done);
  }
  const privateKey = crypto.createPrivateKey(premade[nextKey++ % premade.length]);
  setImmediate(done, null, crypto.createPublicKey(privateKey), privateKey);
};

const trace = [];
if (process.env.BENCH_PROBE_TRACE === '1') {
  // The relay's own copy of ioredis (dist/main.js resolves it from its checkout).
  const root = join(dirname(require.resolve(process.argv[1])), '..');
  const resolve = (m) => require.resolve(m, { paths: [root] });
  const Commander = require(join(dirname(resolve('ioredis')), 'utils', 'Commander.js')).default;
  const { Redis } = require(resolve('ioredis'));
  const define = Commander.prototype.defineCommand;
  Commander.prototype.defineCommand = function traced(name, definition) {
    define.call(this, name, definition);
    const fn = this[name];
    // Script arguments: routing key, prefix, limits JSON, now, then the script's own (node id first
    // for claims).
    this[name] = function timed(...args) {
      const row = { op: name, conn: this.options.connectionName, sent: epoch(), inFlight: this.commandQueue?.length ?? 0 };
      if (name === 'tpEnqueue') {
        row.job = args[4];
        row.node = args[6];
      } else if (name === 'tpClaimNext' || name === 'tpHasWork') {
        row.node = args[4];
        // A waiting poll's claim-or-hold carries its holder (ARGV 7).
        if (name === 'tpClaimNext') row.hold = Boolean(args[7]);
      }
      trace.push(row);
      const done = (reply) => {
        row.answered = epoch();
        if ((name === 'tpClaimNext' || name === 'tpEnqueue') && Array.isArray(reply)) row.replyItems = reply.length;
        return reply;
      };
      return fn.apply(this, args).then(done);
    };
  };
  const emit = Redis.prototype.emit;
  Redis.prototype.emit = function observed(event, ...rest) {
    if (event === 'message') {
      const key = String(rest[1]);
      if (key.startsWith('h\n')) {
        // A hand-off (one-turn delivery): `h\n<process>\n<token>\n<claim fields>`, job id first.
        const json = key.split('\n').slice(3).join('\n');
        trace.push({ op: 'handoff', conn: this.options.connectionName, at: epoch(), job: JSON.parse(json)[0] });
      } else {
        trace.push({ op: 'message', conn: this.options.connectionName, at: epoch(), key });
      }
    }
    return emit.call(this, event, ...rest);
  };
}

/** Bytes: process.memoryUsage(), V8's heap totals, and each heap space's resident size (physical). */
function memory() {
  const m = process.memoryUsage();
  const h = v8.getHeapStatistics();
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((x) => [x.space_name, x.physical_space_size]));
  return { ...m, totalHeapSize: h.total_heap_size, heapPhysical: h.total_physical_size, usedHeapSize: h.used_heap_size, mallocedMemory: h.malloced_memory, externalMemory: h.external_memory, spaces };
}

if (typeof process.send === 'function') {
  process.on('message', (msg) => {
    if (!msg || typeof msg !== 'object' || typeof msg.cmd !== 'string') return;
    let body;
    try {
      switch (msg.cmd) {
        case 'gc':
          global.gc?.();
          global.gc?.();
          body = memory();
          break;
        case 'memory':
          body = memory();
          break;
        case 'snapshot':
          body = { path: v8.writeHeapSnapshot(msg.path) };
          break;
        case 'eld':
          body = { p50Ms: ms(eld.percentile(50)), p99Ms: ms(eld.percentile(99)), maxMs: ms(eld.max), meanMs: ms(eld.mean), samples: eld.count };
          eld.reset();
          break;
        case 'keygen':
          body = { calls: keygen.calls, waitMs: Math.round(keygen.waitMs) };
          break;
        case 'trace':
          body = trace.splice(0);
          break;
        default:
          body = { error: `unknown command ${msg.cmd}` };
      }
    } catch (error) {
      body = { error: String(error) };
    }
    process.send({ id: msg.id, body });
  });
}
