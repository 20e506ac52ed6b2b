// Jest setup: tests build their own RelayConfig from explicit env objects (test/helpers/test-app.ts);
// nothing here may depend on the developer's shell environment.
process.env.TZ = 'UTC';
