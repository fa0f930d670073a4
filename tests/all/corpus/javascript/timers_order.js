// Timers, immediates and promise jobs in Node's order.
setTimeout(() => console.log('timeout 10'), 10);
setImmediate(() => console.log('immediate'));
Promise.resolve().then(() => console.log('microtask'));
process.nextTick(() => console.log('nextTick'));
console.log('sync');
