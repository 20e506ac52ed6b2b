import { Module } from '@nestjs/common';
import { LifecycleModule } from '../lifecycle/lifecycle.module';
import { StateModule } from '../state/state.module';
import { ClientLifecycleService } from './client-lifecycle.service';

/** The client half of a request's life, shared by the legacy, API v1 and gateway routes. */
@Module({
  imports: [StateModule, LifecycleModule],
  providers: [ClientLifecycleService],
  exports: [ClientLifecycleService],
})
export class ClientLifecycleModule {}
