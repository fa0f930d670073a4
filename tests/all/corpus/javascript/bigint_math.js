const factorial = (n) => (n <= 1n ? 1n : n * factorial(n - 1n));
console.log(factorial(25n), factorial(25n).toString().length);
console.log(2n ** 64n, BigInt(Number.MAX_SAFE_INTEGER) + 2n, typeof 1n);
console.log(Math.max(...[4, 9, 2]), Math.hypot(3, 4), Math.round(2.5), Math.round(-2.5), (0.1 + 0.2).toFixed(10));
console.log(Number.isInteger(5.0), Number.parseFloat('3.14abc'), (255).toString(2), (255).toString(16), Number.EPSILON > 0);
console.log([10, 1, 5, 100].sort(), [10, 1, 5, 100].sort((a, b) => a - b));
