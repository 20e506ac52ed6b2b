// The framework floor for bench/overhead.mjs: a bare NestJS 12 express app with one GET and one
// POST route answering a fixed JSON body of a given size. Nothing else: no pipes, guards, logging
// or metrics. usage: node bench/bare-app.mjs <port> <responseBytes>
import 'reflect-metadata';
import { Body, Controller, Get, HttpCode, Post, Query } from '@nestjs/common';
import { serveBareNest } from './lib.mjs';

const port = Number(process.argv[2] ?? 5099);
const size = Number(process.argv[3] ?? 64);
const filler = 'x'.repeat(Math.max(0, size - '{"message":""}'.length));
const answer = { message: filler };

const sized = new Map();
/** `?size=N` answers N bytes of JSON instead of the default size (cycle steps differ in size). */
function answerOf(size) {
  const n = Number(size);
  if (!Number.isFinite(n) || n <= 0) return answer;
  if (!sized.has(n)) sized.set(n, { message: 'x'.repeat(Math.max(0, n - '{"message":""}'.length)) });
  return sized.get(n);
}

class BareController {
  get(size) {
    return answerOf(size);
  }

  post(body, size) {
    return body && typeof body === 'object' ? answerOf(size) : { message: '' };
  }
}
Controller()(BareController);
Get('bare')(BareController.prototype, 'get', Object.getOwnPropertyDescriptor(BareController.prototype, 'get'));
Post('bare')(BareController.prototype, 'post', Object.getOwnPropertyDescriptor(BareController.prototype, 'post'));
HttpCode(200)(BareController.prototype, 'post', Object.getOwnPropertyDescriptor(BareController.prototype, 'post'));
Body()(BareController.prototype, 'post', 0);
Query('size')(BareController.prototype, 'post', 1);
Query('size')(BareController.prototype, 'get', 0);
Reflect.defineMetadata('design:paramtypes', [Object, String], BareController.prototype, 'post');
Reflect.defineMetadata('design:paramtypes', [String], BareController.prototype, 'get');

await serveBareNest(BareController, port);
