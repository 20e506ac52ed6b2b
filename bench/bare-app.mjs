// The framework floor for bench/overhead.mjs: a bare NestJS 12 express app with one GET and one
// POST route answering a fixed JSON body of a given size. Nothing else: no pipes, guards, logging
// or metrics. usage: node bench/bare-app.mjs <port> <responseBytes>
import 'reflect-metadata';
import { Body, Controller, Get, HttpCode, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';

const port = Number(process.argv[2] ?? 5099);
const size = Number(process.argv[3] ?? 64);
const filler = 'x'.repeat(Math.max(0, size - '{"message":""}'.length));
const answer = { message: filler };

class BareController {
  get() {
    return answer;
  }

  post(body) {
    return body && typeof body === 'object' ? answer : { message: '' };
  }
}
Controller()(BareController);
Get('bare')(BareController.prototype, 'get', Object.getOwnPropertyDescriptor(BareController.prototype, 'get'));
Post('bare')(BareController.prototype, 'post', Object.getOwnPropertyDescriptor(BareController.prototype, 'post'));
HttpCode(200)(BareController.prototype, 'post', Object.getOwnPropertyDescriptor(BareController.prototype, 'post'));
Body()(BareController.prototype, 'post', 0);
Reflect.defineMetadata('design:paramtypes', [Object], BareController.prototype, 'post');

class BareModule {}
Module({ controllers: [BareController] })(BareModule);

const app = await NestFactory.create(BareModule, { logger: false });
await app.listen(port, '127.0.0.1');
process.on('SIGINT', () => void app.close().then(() => process.exit(0)));
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
