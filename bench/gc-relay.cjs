// Runs the built relay with a SIGUSR2 handler that forces a full GC (node --expose-gc), so memory
// benchmarks can measure retained bytes instead of garbage that has not been collected yet.
process.on('SIGUSR2', () => {
  if (typeof global.gc === 'function') {
    global.gc();
    global.gc();
  }
});
require('../dist/main.js');
