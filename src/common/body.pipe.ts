import type { PipeTransform } from '@nestjs/common';
import type { ClassConstructor } from 'class-transformer';
import { parseBody } from './envelope-body';

/** `@Body(new BodyOf(Dto))`: validates with the DTO's {@link BodyShape} rules and wire errors. */
export class BodyOf<T extends object> implements PipeTransform<unknown, T> {
  constructor(private readonly cls: ClassConstructor<T>) {}

  transform(value: unknown): T {
    return parseBody(this.cls, value);
  }
}
