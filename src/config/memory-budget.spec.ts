import { MEMORY_MODEL, planMemory, runtimeMemory, type MemoryPlanInput } from './memory-budget';
import { ConfigError, RelayConfig } from './relay-config';

const MiB = 1024 * 1024;
/** What Node 20 and 24 report in a 512 MiB cgroup with the chart's --max-old-space-size=384. */
const CHART_POD = { constrainedBytes: 512 * MiB, heapLimitBytes: 387 * MiB };
const base = (over: Partial<MemoryPlanInput> = {}): MemoryPlanInput => ({
  runtime: CHART_POD,
  maxBodyBytes: MiB,
  bodyBytesInFlight: 32 * MiB,
  store: 'memory',
  ...over,
});

describe(planMemory.name, () => {
  it('should derive the queue and answer byte caps of a 512 MiB pod from its heap and memory limits', () => {
    const { plan, problems, warnings } = planMemory(base());

    const data = Math.floor(Math.min(0.8 * 387, 512 - 96) * MiB - 48 * MiB - 32 * MiB);
    const answers = Math.floor((0.32 * data) / 1.1);
    expect(problems).toEqual([]);
    expect(warnings).toEqual([]);
    expect(plan).toEqual({
      limitBytes: 512 * MiB,
      limitSource: 'cgroup',
      heapLimitBytes: 387 * MiB,
      dataBytes: data,
      maxQueuedBytes: Math.floor((0.2 * data) / 1.1),
      maxAnswerBytes: answers,
      answerReserveBytes: Math.floor(answers * 0.25),
      maxStoredResponses: 50000,
      maxStreamSessions: 1024,
      maxHeldWaits: Math.floor((0.38 * data) / (12 * 1024)),
      maxHeldWaitsPerAddress: Math.floor(Math.floor((0.38 * data) / (12 * 1024)) / 8),
      derived: ['maxQueuedBytes', 'maxAnswerBytes', 'maxHeldWaits'],
    });
    // What the image test asks of this pod (bench/pod-capacity.mjs, up to 10,100 of each):
    // 10,000 queued 4 KiB requests (4 KiB ciphertext, 8 bytes of key and iv)...
    expect(10100 * (4096 + 8)).toBeLessThan(plan?.maxQueuedBytes ?? 0);
    // ...10,000 waiting 4 KiB answers below the reserve (a 604-character client key, the records)...
    expect(10100 * (4096 + 4 + 604 + 256)).toBeLessThan(answers * 0.75);
    // ...and 1,024 node polls, 5,000 retrieves and 1,024 gateway chats held at once.
    expect(plan?.maxHeldWaits).toBeGreaterThanOrEqual(1024 + 5000 + 1024);
  });

  it.each<[string, number, number, number]>([
    // The chart's pod shapes: its --max-old-space-size (min(75 %, limit - 128 MiB)) and
    // --max-semi-space-size=1 give these heap limits on Node 24.
    ['256Mi', 256, 131, 804],
    ['512Mi', 512, 387, 7445],
    ['1Gi', 1024, 771, 17406],
  ])(
    'should budget the waits a %s pod holds at once from the heap left for them',
    (_, limitMiB, heapMiB, held) => {
      const runtime = { constrainedBytes: limitMiB * MiB, heapLimitBytes: heapMiB * MiB };

      const memory = planMemory(base({ runtime })).plan;
      const redis = planMemory(base({ runtime, store: 'redis' })).plan;

      expect(memory?.maxHeldWaits).toBe(held);
      expect(memory?.maxHeldWaits).toBe(
        Math.floor((0.38 * (memory?.dataBytes ?? 0)) / MEMORY_MODEL.heldWaitBytes),
      );
      // With Redis the queue and the answers are not in this process: their shares hold waits.
      expect(redis?.maxHeldWaits).toBe(
        Math.floor((0.9 * (redis?.dataBytes ?? 0)) / MEMORY_MODEL.heldWaitBytes),
      );
    },
  );

  it('should give one address an eighth of the held-wait budget, at least 64 and at most all of it, unless set', () => {
    const derived = planMemory(base()).plan;
    const tiny = planMemory(base({ maxHeldWaits: 100 })).plan;
    const two = planMemory(base({ maxHeldWaits: 2 })).plan;
    const set = planMemory(base({ maxHeldWaitsPerAddress: 5 })).plan;
    const above = planMemory(base({ maxHeldWaits: 10, maxHeldWaitsPerAddress: 50 })).plan;

    expect(derived?.maxHeldWaitsPerAddress).toBe(Math.floor((derived?.maxHeldWaits ?? 0) / 8));
    expect(tiny?.maxHeldWaitsPerAddress).toBe(64);
    expect(two?.maxHeldWaitsPerAddress).toBe(2);
    expect(set?.maxHeldWaitsPerAddress).toBe(5);
    expect(above?.maxHeldWaitsPerAddress).toBe(10);
  });

  it('should keep an explicit held-wait budget that fits, and refuse one that cannot', () => {
    const small = planMemory(base({ maxHeldWaits: 2 }));
    const large = planMemory(base({ maxHeldWaits: 100000 }));

    expect(small.plan).toMatchObject({
      maxHeldWaits: 2,
      derived: ['maxQueuedBytes', 'maxAnswerBytes'],
    });
    expect(large).toMatchObject({
      plan: null,
      problems: [
        'TOKENPLACE_RELAY_MAX_HELD_WAITS=100000 needs about 1172 MiB of heap with every wait held, more than the 87 MiB the memory budget gives held waits (memory limit 512 MiB from the cgroup, heap limit 387 MiB): lower it, or leave it unset to derive it from the budget',
      ],
    });
  });

  it('should bound what a full queue and full answer store hold well below the pod limit', () => {
    const plan = planMemory(base()).plan;

    const heldAtCaps =
      MEMORY_MODEL.amplification * ((plan?.maxQueuedBytes ?? 0) + (plan?.maxAnswerBytes ?? 0)) +
      MEMORY_MODEL.heldWaitBytes * (plan?.maxHeldWaits ?? 0);
    const worstRss =
      MEMORY_MODEL.nativeReserveBytes +
      MEMORY_MODEL.workerThreadBytes + // the gateway's one unwrap thread (the default)
      MEMORY_MODEL.heapBaselineBytes +
      32 * MiB +
      heldAtCaps;

    expect(heldAtCaps).toBeLessThan(0.8 * CHART_POD.heapLimitBytes);
    expect(worstRss).toBeLessThan(512 * MiB);
  });

  it("should take the gateway's worker threads out of a memory limit that binds before the heap", () => {
    const runtime = { constrainedBytes: 256 * MiB, heapLimitBytes: 4144 * MiB };

    const none = planMemory(base({ runtime })).plan;
    const two = planMemory(base({ runtime, workerThreads: 2 })).plan;
    const inChartPod = planMemory(base({ workerThreads: 1 })).plan;

    expect((none?.dataBytes ?? 0) - (two?.dataBytes ?? 0)).toBe(2 * MEMORY_MODEL.workerThreadBytes);
    expect(inChartPod?.dataBytes).toBe(planMemory(base()).plan?.dataBytes);
  });

  it('should keep the static defaults where memory is plentiful (no container limit)', () => {
    const { plan } = planMemory(
      base({ runtime: { constrainedBytes: null, heapLimitBytes: 4144 * MiB } }),
    );

    expect(plan).toMatchObject({
      limitBytes: null,
      limitSource: 'none',
      maxQueuedBytes: 512 * MiB,
      maxAnswerBytes: 512 * MiB,
      maxStoredResponses: 50000,
      maxHeldWaits: 100000,
    });
  });

  it('should prefer TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES over the cgroup limit', () => {
    const { plan } = planMemory(base({ configuredLimitBytes: 256 * MiB }));

    expect(plan).toMatchObject({
      limitBytes: 256 * MiB,
      limitSource: 'TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES',
    });
    expect(plan?.dataBytes).toBe((256 - 96 - 48 - 32) * MiB);
  });

  it.each<[string, Partial<MemoryPlanInput>, string]>([
    [
      'explicit caps that cannot fit, naming them and the budget',
      { maxQueuedBytes: 512 * MiB },
      'TOKENPLACE_RELAY_MAX_QUEUED_BYTES=536870912 need about 563 MiB of heap when full, more than the 119 MiB the memory budget gives queued requests and waiting answers (memory limit 512 MiB from the cgroup, heap limit 387 MiB): lower them, or leave them unset to derive them from the budget',
    ],
    [
      'a limit too small for the runtime and its request bodies',
      { configuredLimitBytes: 128 * MiB },
      'memory budget too small: memory limit 128 MiB from TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES, heap limit 387 MiB leave 0 MiB for relay state after the runtime (48 MiB) and request bodies being read (TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT, 32 MiB); at least 16 MiB is needed: raise the memory limit or lower TOKENPLACE_RELAY_MAX_BODY_BYTES or TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT',
    ],
  ])('should refuse %s', (_, over, problem) => {
    const refused = planMemory(base(over));

    expect(refused).toMatchObject({ plan: null, problems: [problem] });
  });

  it('should budget answers in bytes, keeping counts as ceilings only', () => {
    const refused = planMemory(base({ maxAnswerBytes: 512 * MiB }));
    const counts = planMemory(base({ maxStoredResponses: 200000, maxStreamSessions: 4096 }));

    expect(refused.problems[0]).toMatch(
      /^TOKENPLACE_RELAY_MAX_ANSWER_BYTES=536870912 need about 563 MiB of heap when full/,
    );
    expect(counts.problems).toEqual([]);
    expect(counts.plan).toMatchObject({ maxStoredResponses: 200000, maxStreamSessions: 4096 });
  });

  it('should give an unset cap what an explicit one leaves', () => {
    const { plan } = planMemory(base({ maxQueuedBytes: 10 * MiB }));

    const capacity = 0.52 * (plan?.dataBytes ?? 0);
    expect(plan?.derived).toEqual(['maxAnswerBytes', 'maxHeldWaits']);
    expect(plan?.maxAnswerBytes).toBe(Math.floor((capacity - 11 * MiB) / 1.1));
  });

  it('should take the bodies being read out of the data budget, at the bound the body admission enforces', () => {
    const small = planMemory(base({ bodyBytesInFlight: 8 * MiB })).plan;
    const large = planMemory(base({ bodyBytesInFlight: 64 * MiB })).plan;

    expect((small?.dataBytes ?? 0) - (large?.dataBytes ?? 0)).toBe(56 * MiB);
  });

  it('should warn when the heap may outgrow the container (no --max-old-space-size)', () => {
    const { plan, warnings } = planMemory(
      base({ runtime: { constrainedBytes: 512 * MiB, heapLimitBytes: 2048 * MiB } }),
    );

    expect(plan?.dataBytes).toBe((512 - 96 - 48 - 32) * MiB);
    expect(warnings).toEqual([
      'the V8 heap limit (2048 MiB) plus 96 MiB outside the heap exceeds the memory limit (512 MiB): garbage may grow past the limit before V8 collects it; set --max-old-space-size to at most 416 (the chart does)',
    ]);
  });

  it('should leave the caps alone with the Redis store (the data lives in Redis)', () => {
    const { plan, problems } = planMemory(base({ store: 'redis', maxStoredResponses: 20000 }));

    expect(problems).toEqual([]);
    expect(plan).toMatchObject({
      maxQueuedBytes: 512 * MiB,
      maxAnswerBytes: 512 * MiB,
      answerReserveBytes: 128 * MiB,
      maxStoredResponses: 20000,
      derived: ['maxHeldWaits'],
    });
  });
});

describe(runtimeMemory.name, () => {
  it('should report this process: a heap limit, and a cgroup limit only when one is set', () => {
    const runtime = runtimeMemory();

    expect(runtime.heapLimitBytes).toBeGreaterThan(64 * MiB);
    expect(runtime.constrainedBytes === null || runtime.constrainedBytes > 0).toBe(true);
  });
});

describe('RelayConfig memory caps', () => {
  it('should run the store with the derived caps and report how they were sized', () => {
    const config = RelayConfig.load(
      { TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES: String(512 * MiB) },
      [],
      { constrainedBytes: null, heapLimitBytes: 387 * MiB },
    );

    expect(config.limits.maxQueuedBytes).toBe(config.memory.maxQueuedBytes);
    expect(config.limits.maxAnswerBytes).toBe(config.memory.maxAnswerBytes);
    expect(config.limits.answerReserveBytes).toBe(config.memory.answerReserveBytes);
    expect(config.limits.maxAnswerBytes).toBeGreaterThan(60 * MiB);
    expect(config.memory.maxHeldWaits).toBeGreaterThan(7048);
    expect(config.limits.maxStoredResponses).toBe(50000);
    expect(config.memory.limitSource).toBe('TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES');
  });

  it('should stop at boot, listing the memory problem like any bad variable', () => {
    const load = (): RelayConfig =>
      RelayConfig.load({ TOKENPLACE_RELAY_MAX_QUEUED_BYTES: String(512 * MiB) }, [], CHART_POD);

    expect(load).toThrow(ConfigError);
    expect(load).toThrow(/TOKENPLACE_RELAY_MAX_QUEUED_BYTES=536870912 need about 563 MiB/);
  });

  it('should refuse a memory limit below 64 MiB as a bad value', () => {
    expect(() => RelayConfig.load({ TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES: '1000' })).toThrow(
      /TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES="1000"/,
    );
  });
});
