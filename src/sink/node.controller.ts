import { Body, Controller, Headers, HttpCode, Post } from '@nestjs/common';
import { BodyOf } from '../common/body.pipe';
import { ClientGone, type CallerWatch } from '../common/client-gone.decorator';
import { Cors, ErrorDialect, JsonBody, OwnMetricsLabel } from '../common/route-facts';
import { ControlRateLimit } from '../edge/rate-limit.guard';
import { CallerOrigin } from '../registry/node-address';
import { OperatorService } from '../registry/operator.service';
import { RegistryService } from '../registry/registry.service';
import { RelayConfig } from '../config/relay-config';
import type { NodeOrigin } from '../state/state.types';
import { ControlDto, NodeHelloDto, UnregisterDto } from './sink.dto';
import { SinkService, type PollBody } from './sink.service';

/** API v1 compute-node routes (spec §4.4.1–4.4.4). */
@Controller('api/v1/relay')
@ErrorDialect('object')
@Cors('none')
@OwnMetricsLabel()
export class NodeController {
  constructor(
    private readonly sink: SinkService,
    private readonly registry: RegistryService,
    private readonly config: RelayConfig,
  ) {}

  /** A body that is not JSON counts as missing: the token check answers first (spec §4.4.1). */
  @Post('servers/register')
  @HttpCode(200)
  @JsonBody({ lenient: true })
  @ControlRateLimit('register')
  async register(
    @Body(new BodyOf(NodeHelloDto)) dto: NodeHelloDto,
    @CallerOrigin() origin: NodeOrigin,
  ): Promise<object> {
    const { credential } = await this.registry.registerV1(
      dto.server_public_key,
      dto.capabilities,
      origin,
      dto.control_credential,
    );
    return {
      next_ping_in_x_seconds: this.config.v1LeaseSeconds,
      poll_wait_seconds: this.config.pollWaitSeconds,
      relay_capabilities: { encrypted_progress_v1: true },
      ...(credential !== null ? { control_credential: credential } : {}),
    };
  }

  @Post('servers/poll')
  @HttpCode(200)
  @ControlRateLimit('poll')
  poll(
    @Body(new BodyOf(NodeHelloDto)) dto: NodeHelloDto,
    @CallerOrigin() origin: NodeOrigin,
    @ClientGone() gone: CallerWatch,
  ): Promise<PollBody> {
    return this.sink.poll(dto, origin, gone);
  }

  @Post('servers/control')
  @HttpCode(200)
  @ControlRateLimit('control')
  control(@Body(new BodyOf(ControlDto)) dto: ControlDto): Promise<object> {
    const acknowledge = dto.acknowledge === true || dto.ack === true;
    return this.sink.control(
      dto.server_public_key,
      dto.request_id,
      dto.control_credential,
      acknowledge,
    );
  }

  @Post('servers/unregister')
  @HttpCode(200)
  @ControlRateLimit('unregister')
  unregister(@Body(new BodyOf(UnregisterDto)) dto: UnregisterDto): Promise<object> {
    return this.sink.unregister(dto);
  }
}

/** Operator removal of any node (spec §4.4.4 operator variant); not a compute-node route. */
@Controller()
@ErrorDialect('object')
@Cors('none')
export class OperatorController {
  constructor(private readonly operator: OperatorService) {}

  @Post([
    'api/v1/relay/unregister',
    'v1/relay/unregister',
    'api/v2/relay/unregister',
    'v2/relay/unregister',
  ])
  @HttpCode(200)
  unregister(
    @Headers('x-token-place-operator') operatorHeader: string | undefined,
    @Headers('authorization') authorization: string | undefined,
    @Body() body: unknown,
  ): Promise<object> {
    return this.operator.unregister(operatorHeader, authorization, body);
  }
}
