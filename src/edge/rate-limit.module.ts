import { Module } from '@nestjs/common';
import { StateModule } from '../state/state.module';
import { RateLimitService } from './rate-limit.service';

/** Provides {@link RateLimitService} to each module whose routes declare a rate limit. */
@Module({ imports: [StateModule], providers: [RateLimitService], exports: [RateLimitService] })
export class RateLimitModule {}
