// The floors under a held relay connection, for bench/held.mjs (kinds floor-net, floor-node,
// floor-express, floor-nest): the same JSON body as a held poll, parsed and then held until the
// client leaves or 120 s pass, on: a bare TCP socket (node:net, the bytes kept, no HTTP); node:http
// (the body read by hand, one timer and one close listener per request: "a socket, a small record
// and a timer"); Express 5 with express.json(); a bare NestJS 12 express app (a controller awaiting a
// promise, as the relay's routes do). GET /livez answers 200 on each.
// usage: BENCH_FLOOR=net|node|express|nest RELAY_PORT=5099 node bench/held-floor.mjs
import 'reflect-metadata';
import http from 'node:http';
import { cli } from './lib.mjs';

cli('usage: BENCH_FLOOR=net|node|express|nest RELAY_PORT=5099 node bench/held-floor.mjs  (started by bench/held.mjs)', {});

const port = Number(process.env.RELAY_PORT ?? 5099);
const floor = process.env.BENCH_FLOOR ?? 'node';
const HOLD_MS = 120_000;

/** One held request: answered after HOLD_MS, forgotten when the caller leaves. */
function hold(req, res, body, send) {
  const record = { key: body?.server_public_key ?? null, since: Date.now() };
  const timer = setTimeout(() => send(200, { held: true, since: record.since }), HOLD_MS);
  res.once('close', () => clearTimeout(timer));
}

if (floor === 'net') {
  // No HTTP at all: a TCP socket that reads the request and keeps it (GET /livez is answered).
  const { createServer } = await import('node:net');
  createServer((socket) => {
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      if (text.startsWith('GET /livez')) {
        socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{"status":"ok"}');
        text = '';
      } else if (text.length > 4096) {
        text = text.slice(-4096);
      }
    });
    socket.on('error', () => undefined);
  }).listen(port, '127.0.0.1');
} else if (floor === 'node') {
  const server = http.createServer((req, res) => {
    const send = (status, value) => {
      const text = JSON.stringify(value);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    if (req.method === 'GET' && req.url === '/livez') {
      send(200, { status: 'ok' });
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let body = null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        send(400, { error: 'bad json' });
        return;
      }
      hold(req, res, body, send);
    });
  });
  server.keepAliveTimeout = 65_000;
  server.listen(port, '127.0.0.1');
} else if (floor === 'express') {
  const { default: express } = await import('express');
  const app = express();
  app.use(express.json());
  app.get('/livez', (_req, res) => res.json({ status: 'ok' }));
  app.post('/hold', (req, res) => hold(req, res, req.body, (status, value) => res.status(status).json(value)));
  const server = app.listen(port, '127.0.0.1');
  server.keepAliveTimeout = 65_000;
} else if (floor === 'nest') {
  const { Body, Controller, Get, HttpCode, Module, Post, Res } = await import('@nestjs/common');
  const { NestFactory } = await import('@nestjs/core');
  class HoldController {
    livez() {
      return { status: 'ok' };
    }

    // The relay's shape: an async handler awaiting a promise that a timer or the caller's leaving ends.
    async hold(body, res) {
      const key = body?.server_public_key ?? null;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, HOLD_MS);
        res.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      return { held: true, key: key === null ? null : key.length };
    }
  }
  Controller()(HoldController);
  Get('livez')(HoldController.prototype, 'livez', Object.getOwnPropertyDescriptor(HoldController.prototype, 'livez'));
  Post('hold')(HoldController.prototype, 'hold', Object.getOwnPropertyDescriptor(HoldController.prototype, 'hold'));
  HttpCode(200)(HoldController.prototype, 'hold', Object.getOwnPropertyDescriptor(HoldController.prototype, 'hold'));
  Body()(HoldController.prototype, 'hold', 0);
  Res({ passthrough: true })(HoldController.prototype, 'hold', 1);
  Reflect.defineMetadata('design:paramtypes', [Object, Object], HoldController.prototype, 'hold');
  class HoldModule {}
  Module({ controllers: [HoldController] })(HoldModule);
  const app = await NestFactory.create(HoldModule, { logger: false });
  await app.listen(port, '127.0.0.1');
  app.getHttpServer().keepAliveTimeout = 65_000;
} else {
  throw new Error(`BENCH_FLOOR must be net, node, express or nest, not ${floor}`);
}
process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
