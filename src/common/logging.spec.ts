import pino from 'pino';
import { PinoLoggerService } from './logging';

function captured(): { lines: unknown[]; service: PinoLoggerService } {
  const lines: unknown[] = [];
  const logger = pino(
    { level: 'trace', base: undefined, timestamp: false },
    { write: (line: string) => lines.push(JSON.parse(line)) },
  );
  return { lines, service: new PinoLoggerService(logger) };
}

describe(PinoLoggerService.name, () => {
  it.each([
    ['log', 30],
    ['error', 50],
    ['warn', 40],
    ['debug', 20],
    ['verbose', 10],
    ['fatal', 60],
  ] as const)('should write Nest level %s at pino level %i with its context', (method, level) => {
    const { lines, service } = captured();

    service[method]('hello', 'SinkService');

    expect(lines).toEqual([{ level, context: 'SinkService', msg: 'hello' }]);
  });

  it("should write Nest's boot chatter at debug", () => {
    const { lines, service } = captured();

    service.log('Mapped {/sink, POST} route', 'RouterExplorer');

    expect(lines).toEqual([
      { level: 20, context: 'RouterExplorer', msg: 'Mapped {/sink, POST} route' },
    ]);
  });
});
