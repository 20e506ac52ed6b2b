import { Module } from '@nestjs/common';
import { ClientLifecycleModule } from '../client-lifecycle/client-lifecycle.module';
import { RateLimitModule } from '../edge/rate-limit.module';
import { LifecycleModule } from '../lifecycle/lifecycle.module';
import { MetricsModule } from '../metrics/metrics.module';
import { RegistryModule } from '../registry/registry.module';
import { StateModule } from '../state/state.module';
import { CatalogService } from './catalog.service';
import { ChatService } from './chat.service';
import { DispatchService } from './dispatch.service';
import {
  GatewayDirectoryController,
  GatewayV1Controller,
  GatewayV2Controller,
} from './gateway.controller';
import { GatewayKeysService } from './keys.service';
import { SseService } from './sse.service';
import { UnwrapPoolService } from './unwrap-pool.service';

/** The OpenAI-compatible gateway: `/api/v1`, `/v1`, `/api/v2`, `/v2` (gateway.md). */
@Module({
  imports: [
    StateModule,
    MetricsModule,
    RegistryModule,
    LifecycleModule,
    ClientLifecycleModule,
    RateLimitModule,
  ],
  controllers: [GatewayV1Controller, GatewayV2Controller, GatewayDirectoryController],
  providers: [
    CatalogService,
    ChatService,
    DispatchService,
    SseService,
    GatewayKeysService,
    UnwrapPoolService,
  ],
  exports: [DispatchService, GatewayKeysService],
})
export class GatewayModule {}
