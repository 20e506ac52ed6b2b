import { Errors, RelayError } from './relay-error';

describe('Errors', () => {
  it.each([
    ['invalidRequest', 400, 'Invalid request data'],
    ['serverToken', 401, 'Missing or invalid relay server token'],
    ['notHolder', 403, 'This request is not held by the answering node'],
    ['unknownStream', 404, 'Unknown stream session'],
    ['streamFull', 413, 'Stream session buffer is full'],
    ['noServers', 503, 'No servers available'],
  ] as const)(
    'should give the plain error %s its group status %i, as its code too',
    (name, status, message) => {
      const error = Errors[name]();

      expect(error).toBeInstanceOf(RelayError);
      expect([error.status, error.message, error.code, error.extra, error.headers]).toEqual([
        status,
        message,
        status,
        {},
        {},
      ]);
    },
  );
});
