const util = require('util');
console.log(util.format('%s has %d items costing %f', 'cart', 3, 9.5));
console.log(util.format('%j', { a: [1, 2] }), util.format('100%% sure'));
console.log(util.inspect({ deep: { deeper: { deepest: { bottom: 1 } } } }, { depth: 0 }));
console.log(util.inspect('quoted'), util.isDeepStrictEqual({ a: [1] }, { a: [1] }));
const wait = util.promisify((ms, cb) => setTimeout(() => cb(null, `waited ${ms}`), ms));
wait(3).then(console.log);
console.log('%s + %s = %d', 1, 2, 3);
console.log('%o', 'str');
