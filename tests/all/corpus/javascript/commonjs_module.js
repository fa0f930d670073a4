module.exports = { add: (a, b) => a + b, PI: 3.14159 };
const lib = module.exports;
console.log(lib.add(2, 3), lib.PI, typeof require, typeof exports, typeof __dirname);
const { strict: assert } = require('assert');
assert.deepStrictEqual(lib.add(1, 1), 2);
assert.throws(() => { throw new TypeError('x'); }, TypeError);
console.log('assertions passed');
try { assert.strictEqual(1, 2); } catch (error) { console.log(error.code, error.name); }
