import { ConfigError, parseRateLimit, RelayConfig } from './relay-config';

function problemsOf(env: Record<string, string>, argv: string[] = []): string[] {
  try {
    RelayConfig.load(env, argv);
  } catch (error) {
    if (error instanceof ConfigError) {
      return error.problems;
    }
    throw error;
  }
  return [];
}

describe(RelayConfig.name, () => {
  it('should default to 127.0.0.1:5010, the memory store and legacy routes on', () => {
    const config = RelayConfig.load({});

    expect(config.host).toBe('127.0.0.1');
    expect(config.port).toBe(5010);
    expect(config.stateStore).toBe('memory');
    expect(config.legacyRoutesEnabled).toBe(true);
    expect(config.drainMs).toBe(5000);
    expect(config.limits.v1DeadlineMs).toBe(480_000);
    expect(config.limits.v1LeaseMs).toBe(30_000);
    expect(config.limits.inFlightTtlMs).toBe(30_000);
  });

  it('should declare every schema property and every variable name in one slice only', () => {
    const described = RelayConfig.describe();

    const properties = described.map((d) => d.property);
    const names = described.flatMap((d) => d.names);
    expect(new Set(properties).size).toBe(properties.length);
    expect(new Set(names).size).toBe(names.length);
    expect(properties).toContain('gatewayEnabled');
    expect(properties).toContain('redisUrl');
  });

  it('should list every bad variable in one error', () => {
    const problems = problemsOf({
      RELAY_PORT: 'eighty',
      TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '0',
      TOKENPLACE_LOG_LEVEL: 'loud',
      API_RATE_LIMIT: 'lots',
      TOKENPLACE_RELAY_STATE_STORE: 'postgres',
    });

    expect(problems).toHaveLength(5);
    expect(problems.join('\n')).toMatch(/RELAY_PORT="eighty"/);
    expect(problems.join('\n')).toMatch(/TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS="0"/);
    expect(problems.join('\n')).toMatch(/TOKENPLACE_LOG_LEVEL="loud"/);
    expect(problems.join('\n')).toMatch(/API_RATE_LIMIT="lots"/);
    expect(problems.join('\n')).toMatch(/TOKENPLACE_RELAY_STATE_STORE="postgres"/);
  });

  it('should never echo a secret value in an error', () => {
    const problems = problemsOf({ TOKENPLACE_RELAY_REDIS_URL: 'http://user:hunter2@host' });

    expect(problems.join('\n')).toContain('TOKENPLACE_RELAY_REDIS_URL=(hidden)');
    expect(problems.join('\n')).not.toContain('hunter2');
  });

  it.each([
    ['TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS', '-1'],
    ['TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS', 'Infinity'],
    ['TOKEN_PLACE_API_V1_CONTROL_TOMBSTONE_TTL_SECONDS', '301'],
    ['TOKENPLACE_TERMINAL_REQUEST_TTL_SECONDS', 'soon'],
    ['TOKEN_PLACE_API_V1_MAX_QUEUE_DEPTH_PER_NODE', '0'],
    ['TOKENPLACE_RELAY_SINK_HOLD_SECONDS', '9'],
    ['TOKENPLACE_RELAY_MAX_BODY_BYTES', '100'],
    ['TOKENPLACE_METRICS_DISABLED', 'maybe'],
    ['RELAY_PORT', '70000'],
    ['TOKENPLACE_RELAY_TRUST_PROXY', 'everyone'],
  ])('should reject %s=%s at boot', (name, value) => {
    expect(problemsOf({ [name]: value })).toEqual([expect.stringContaining(`${name}=`)]);
  });

  it('should clamp the request deadline into [min, max] as the spec says', () => {
    const config = RelayConfig.load({
      TOKEN_PLACE_API_V1_REQUEST_DEADLINE_SECONDS: '9000',
      TOKEN_PLACE_API_V1_REQUEST_DEADLINE_MAX_SECONDS: '600',
    });

    expect(config.limits.v1DeadlineMs).toBe(600_000);
  });

  it('should let --host/--port flags override RELAY_HOST/RELAY_PORT and reject unknown flags', () => {
    const config = RelayConfig.load({ RELAY_HOST: '0.0.0.0', RELAY_PORT: '6000' }, [
      '--host',
      '127.0.0.2',
      '--port=7000',
    ]);

    expect(config.host).toBe('127.0.0.2');
    expect(config.port).toBe(7000);
    expect(problemsOf({}, ['--verbose'])).toEqual([
      'unknown flag --verbose (accepted: --host, --port, --use_mock_llm)',
    ]);
    expect(problemsOf({}, ['--port', 'x'])).toEqual([expect.stringContaining('--port="x"')]);
  });

  it("should start the demo node with the existing relay's --use_mock_llm flag or USE_MOCK_LLM=1", () => {
    expect(RelayConfig.load({}, ['--use_mock_llm']).gateway.mockNode).toBe(true);
    expect(RelayConfig.load({ USE_MOCK_LLM: '1' }).gateway.mockNode).toBe(true);
    expect(RelayConfig.load({}).gateway.mockNode).toBe(false);
  });

  it('should read the gateway block with its defaults', () => {
    const g = RelayConfig.load({}).gateway;

    expect(g).toMatchObject({
      enabled: true,
      timeoutMs: 485_000,
      serviceName: 'token.place',
      keyFile: null,
      moderation: { enabled: false },
    });
    expect(g.streamRateLimit).toMatchObject({ limit: 30, windowSeconds: 60 });
    expect(RelayConfig.load({ API_STREAM_RATE_LIMIT: '' }).gateway.streamRateLimit).toBeNull();
    expect(RelayConfig.load({ SERVICE_NAME: '  ci  ' }).gateway.serviceName).toBe('ci');
    expect(problemsOf({ TOKENPLACE_API_V1_DISTRIBUTED_TIMEOUT_SECONDS: 'soon' })).toEqual([
      expect.stringContaining('TOKENPLACE_API_V1_DISTRIBUTED_TIMEOUT_SECONDS="soon"'),
    ]);
  });

  it('should accept the runbook, the existing relay and the plural token names together', () => {
    const config = RelayConfig.load({
      TOKENPLACE_RELAY_SERVER_TOKEN: ' a ',
      TOKEN_PLACE_RELAY_SERVER_TOKEN: 'b',
      TOKEN_PLACE_RELAY_SERVER_TOKENS: 'c, d\ne,,a',
    });

    expect(config.serverTokens).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it.each(['TOKENPLACE_RELAY_PUBLIC_URL', 'TOKEN_PLACE_RELAY_PUBLIC_URL', 'RELAY_PUBLIC_URL'])(
    'should read the public URL from %s',
    (name) => {
      expect(RelayConfig.load({ [name]: 'https://staging.token.place/' }).publicUrl).toBe(
        'https://staging.token.place',
      );
    },
  );

  it('should prefer the runbook name when both public URL names are set', () => {
    const config = RelayConfig.load({
      TOKENPLACE_RELAY_PUBLIC_URL: 'https://a.example',
      RELAY_PUBLIC_URL: 'https://b.example',
    });

    expect(config.publicUrl).toBe('https://a.example');
  });

  it('should distinguish an unset metrics token (open) from an empty one (always 401)', () => {
    expect(RelayConfig.load({}).metricsToken).toBeUndefined();
    expect(RelayConfig.load({ TOKENPLACE_METRICS_TOKEN: '' }).metricsToken).toBe('');
  });

  it('should refuse the redis store without a URL, and a drain window longer than the grace period', () => {
    expect(problemsOf({ TOKENPLACE_RELAY_STATE_STORE: 'redis' })).toEqual([
      'TOKENPLACE_RELAY_STATE_STORE=redis needs TOKENPLACE_RELAY_REDIS_URL',
    ]);
    expect(
      problemsOf({
        TOKENPLACE_RELAY_DRAIN_SECONDS: '30',
        TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS: '10',
      }),
    ).toEqual([expect.stringContaining('must be greater than TOKENPLACE_RELAY_DRAIN_SECONDS')]);
  });

  it('should read Sentinel settings and refuse what cannot work together', () => {
    const sentinel = { TOKENPLACE_RELAY_STATE_STORE: 'redis' };
    const config = RelayConfig.load({
      ...sentinel,
      TOKENPLACE_RELAY_REDIS_SENTINELS: 'valkey-0:26379, valkey-1:26379,[::1]:26380',
      TOKENPLACE_RELAY_REDIS_SENTINEL_MASTER: 'mymaster',
      TOKENPLACE_RELAY_REDIS_SENTINEL_PASSWORD: 's3cret',
      TOKENPLACE_RELAY_REDIS_PASSWORD: 'data-secret',
    });

    expect(config.redisTopology).toEqual({
      kind: 'sentinel',
      sentinels: [
        { host: 'valkey-0', port: 26379 },
        { host: 'valkey-1', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      master: 'mymaster',
      sentinelPassword: 's3cret',
      sentinelTls: false,
    });
    expect(config.redisPassword).toBe('data-secret');
    expect(problemsOf({ ...sentinel, TOKENPLACE_RELAY_REDIS_SENTINELS: 'a:26379' })).toEqual([
      expect.stringContaining('needs TOKENPLACE_RELAY_REDIS_SENTINEL_MASTER'),
    ]);
    expect(
      problemsOf({
        ...sentinel,
        TOKENPLACE_RELAY_REDIS_SENTINELS: 'a:26379',
        TOKENPLACE_RELAY_REDIS_SENTINEL_MASTER: 'm',
        TOKENPLACE_RELAY_REDIS_CLUSTER_NODES: 'b:6379',
      }),
    ).toEqual([expect.stringContaining('exclude each other')]);
    expect(problemsOf({ ...sentinel, TOKENPLACE_RELAY_REDIS_SENTINELS: 'a' })).toEqual([
      expect.stringContaining(
        'TOKENPLACE_RELAY_REDIS_SENTINELS="a": must be comma-separated host:port',
      ),
    ]);
    expect(
      problemsOf({
        ...sentinel,
        TOKENPLACE_RELAY_REDIS_SENTINEL_PASSWORD: '%%%',
        TOKENPLACE_RELAY_REDIS_SENTINELS: 'a:0',
        TOKENPLACE_RELAY_REDIS_SENTINEL_MASTER: 'm',
      }),
    ).toEqual(['Redis Sentinel and Cluster ports must be 1-65535']);
  });

  it('should hash-tag the default prefix, migrate from the old default only while the prefix is left alone, and need a tag on a Cluster', () => {
    const redis = {
      TOKENPLACE_RELAY_STATE_STORE: 'redis',
      TOKENPLACE_RELAY_REDIS_URL: 'redis://r:6379',
    };
    const defaults = RelayConfig.load(redis);
    const own = RelayConfig.load({ ...redis, TOKENPLACE_RELAY_REDIS_KEY_PREFIX: 'staging:' });
    const off = RelayConfig.load({ ...redis, TOKENPLACE_RELAY_REDIS_MIGRATE_FROM_PREFIX: 'off' });

    expect(defaults.redisKeyPrefix).toBe('{tokenplace}:');
    expect(defaults.redisMigrateFromPrefix).toBe('tokenplace:');
    expect(own.redisMigrateFromPrefix).toBeNull();
    expect(off.redisMigrateFromPrefix).toBeNull();
    expect(
      problemsOf({
        TOKENPLACE_RELAY_STATE_STORE: 'redis',
        TOKENPLACE_RELAY_REDIS_CLUSTER_NODES: 'c0:6379,c1:6379',
        TOKENPLACE_RELAY_REDIS_KEY_PREFIX: 'tokenplace:',
      }),
    ).toEqual([expect.stringContaining('a Redis Cluster needs a hash tag in the prefix')]);
    expect(problemsOf({ ...redis, TOKENPLACE_RELAY_REDIS_KEY_PREFIX: '{a}{b}:' })).toEqual([
      expect.stringContaining('at most one hash tag'),
    ]);
    expect(problemsOf({ ...redis, TOKENPLACE_RELAY_REDIS_KEY_PREFIX: '{}:' })).toEqual([
      expect.stringContaining('at most one hash tag'),
    ]);
    expect(
      problemsOf({
        ...redis,
        TOKENPLACE_RELAY_REDIS_KEY_PREFIX: 'tokenplace:{x}:',
        TOKENPLACE_RELAY_REDIS_MIGRATE_FROM_PREFIX: 'tokenplace:',
      }),
    ).toEqual([expect.stringContaining('one prefix may not start with the other')]);
  });

  it('should keep the replication wait shorter than the command timeout', () => {
    const redis = {
      TOKENPLACE_RELAY_STATE_STORE: 'redis',
      TOKENPLACE_RELAY_REDIS_URL: 'redis://r:6379',
    };

    expect(RelayConfig.load(redis).redisWaitReplicas).toBe(0);
    expect(
      problemsOf({
        ...redis,
        TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS: '1',
        TOKENPLACE_RELAY_REDIS_WAIT_TIMEOUT_MS: '2000',
      }),
    ).toEqual([
      expect.stringContaining('must be less than TOKENPLACE_RELAY_REDIS_COMMAND_TIMEOUT_MS (2000)'),
    ]);
  });

  it('should refuse a node token variable set to nothing but blanks, naming it', () => {
    expect(problemsOf({ TOKENPLACE_RELAY_SERVER_TOKEN: ' \t ' })).toEqual([
      'TOKENPLACE_RELAY_SERVER_TOKEN is set but blank: node routes would be open to anyone. Put the token in it, or unset it to run with open node registration on purpose',
    ]);
    expect(problemsOf({ TOKEN_PLACE_RELAY_SERVER_TOKENS: ',\n, ' })[0]).toMatch(
      /^TOKEN_PLACE_RELAY_SERVER_TOKENS is set but blank/,
    );
    expect(problemsOf({ TOKEN_PLACE_RELAY_SERVER_TOKENS: 'a,,b' })).toEqual([]);
  });

  it('should bound bodies in flight by default (32 and 4 bodies of the limit) and refuse bounds below one body', () => {
    const config = RelayConfig.load({ TOKENPLACE_RELAY_MAX_BODY_BYTES: '65536' });

    expect(config.bodies).toEqual({
      maxBodyBytes: 65536,
      maxInFlightBytes: 32 * 65536,
      maxInFlightBytesPerAddress: 4 * 65536,
      minChargeBytes: 16384,
      timeoutMs: 10_000,
      minBytesPerSecond: 32768,
    });
    expect(
      problemsOf({
        TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT: '100000',
        TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS: '200000',
      }),
    ).toEqual([
      'TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT (100000) must be at least TOKENPLACE_RELAY_MAX_BODY_BYTES (1048576), or no body of the largest size could be read',
      'TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS (200000) must be at least TOKENPLACE_RELAY_MAX_BODY_BYTES (1048576), or no body of the largest size could be read',
      'TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS (200000) must not exceed TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT (100000)',
    ]);
  });

  it('should give one node with 128 requests of 2 s in flight room on every route (spec §7.4 traffic)', () => {
    const config = RelayConfig.load({});
    const perSecond = (route: keyof typeof config.controlRateLimits): number => {
      const limit = config.controlRateLimits[route];
      return limit ? limit.limit / limit.windowSeconds : Infinity;
    };
    const inFlight = 128;
    const claimsPerSecond = inFlight / 2;
    const needed = {
      poll: claimsPerSecond,
      control: claimsPerSecond + inFlight / config.controlNextPollSeconds,
      progress: inFlight,
      response: claimsPerSecond,
    };

    for (const [route, rate] of Object.entries(needed)) {
      expect({ route, fits: perSecond(route as keyof typeof needed) >= rate * 1.2 }).toEqual({
        route,
        fits: true,
      });
    }
    const ip = config.controlIpRateLimit;
    expect((ip?.limit ?? 0) / (ip?.windowSeconds ?? 1)).toBeGreaterThanOrEqual(2 * inFlight);
  });

  it('should derive GPU host and port from the upstream URL', () => {
    const config = RelayConfig.load({ TOKENPLACE_RELAY_UPSTREAM_URL: 'http://gpu.internal:8080' });

    expect(config.gpuHost).toBe('gpu.internal');
    expect(config.gpuPort).toBe(8080);
    expect(config.explicitUpstreamConfig).toBe(true);
  });
});

describe(parseRateLimit.name, () => {
  it.each([
    ['60/hour', { limit: 60, windowMs: 3_600_000, text: '60 per 1 hour' }],
    ['10 per minute', { limit: 10, windowMs: 60_000, text: '10 per 1 minute' }],
    ['1000/day', { limit: 1000, windowMs: 86_400_000, text: '1000 per 1 day' }],
    ['5/2 seconds', { limit: 5, windowMs: 2000, text: '5 per 2 second' }],
  ])('should parse %s', (value, expected) => {
    expect(parseRateLimit(value)).toMatchObject(expected);
  });

  it('should treat off as no limit', () => {
    expect(parseRateLimit('off')).toBeNull();
  });
});

describe('unknown variables', () => {
  const warningsOf = (env: Record<string, string>) =>
    RelayConfig.load(env).warnings.map((w) => w.message);

  it('should name the closest known variable for a misspelt setting', () => {
    const config = RelayConfig.load({ TOKENPLACE_RELAY_STAT_STORE: 'redis' });

    expect(config.stateStore).toBe('memory');
    expect(config.warnings).toEqual([
      {
        variable: 'TOKENPLACE_RELAY_STAT_STORE',
        suggestion: 'TOKENPLACE_RELAY_STATE_STORE',
        message:
          'TOKENPLACE_RELAY_STAT_STORE is not a setting of this relay and is ignored; did you mean TOKENPLACE_RELAY_STATE_STORE?',
      },
    ]);
  });

  it.each([
    ['TOKEN_PLACE_API_V1_RELAY_LEASE_SECONDS', 'TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS'],
    ['RELAY_PROT', 'RELAY_PORT'],
    ['API_RATE_LIMT', 'API_RATE_LIMIT'],
    ['TOKENPLACE_METRIC_TOKEN', 'TOKENPLACE_METRICS_TOKEN'],
  ])('should suggest for %s', (typo, suggestion) => {
    expect(RelayConfig.load({ [typo]: '1' }).warnings[0]?.suggestion).toBe(suggestion);
  });

  it('should explain the retired gateway key pool size', () => {
    expect(warningsOf({ TOKENPLACE_GATEWAY_KEY_POOL_SIZE: '8' })).toEqual([
      'TOKENPLACE_GATEWAY_KEY_POOL_SIZE is ignored: retired: the gateway seals every chat under one client key per process (see TOKENPLACE_GATEWAY_CLIENT_KEY_ROTATE_SECONDS)',
    ]);
  });

  it('should warn without a guess when nothing is close, and explain names that belong to other programs', () => {
    expect(
      warningsOf({
        TOKENPLACE_SOMETHING_ELSE_ENTIRELY: '1',
        RELAY_WORKERS: '2',
        TOKENPLACE_RELAY_URL: 'x',
      }),
    ).toEqual([
      'RELAY_WORKERS is ignored: a gunicorn setting of the existing Python relay; this relay is one Node.js process (scale with replicas and the Redis store)',
      'TOKENPLACE_RELAY_URL is ignored: read by compute nodes to find their relay; the relay listens on RELAY_HOST:RELAY_PORT',
      'TOKENPLACE_SOMETHING_ELSE_ENTIRELY is not a setting of this relay and is ignored',
    ]);
  });

  it("should explain the existing relay's gateway provider variables instead of guessing", () => {
    expect(
      RelayConfig.load({
        TOKENPLACE_API_V1_COMPUTE_PROVIDER: 'distributed',
        TOKENPLACE_RELAY_INTERNAL_URL: 'http://127.0.0.1:5010',
      }).warnings.map((w) => [w.variable, w.suggestion]),
    ).toEqual([
      ['TOKENPLACE_API_V1_COMPUTE_PROVIDER', undefined],
      ['TOKENPLACE_RELAY_INTERNAL_URL', undefined],
    ]);
  });

  it('should stay quiet for known variables, aliases, other families and Kubernetes service links', () => {
    expect(
      warningsOf({
        TOKENPLACE_RELAY_STATE_STORE: 'memory',
        TOKEN_PLACE_RELAY_SERVER_TOKEN: 't',
        RELAY_PUBLIC_URL: 'https://relay.example',
        HOME: '/root',
        NODE_OPTIONS: '',
        TOKENPLACE_RELAY_SERVICE_HOST: '10.43.0.10',
        TOKENPLACE_RELAY_SERVICE_PORT_HTTP: '80',
        TOKENPLACE_RELAY_PORT_80_TCP_ADDR: '10.43.0.10',
      }),
    ).toEqual([]);
  });
});
