function* fibonacci() { let [a, b] = [0, 1]; for (;;) { yield a; [a, b] = [b, a + b]; } }
const first = [];
for (const n of fibonacci()) { if (n > 100) break; first.push(n); }
console.log(first);
class Range {
  constructor(start, end, step = 1) { Object.assign(this, { start, end, step }); }
  *[Symbol.iterator]() { for (let i = this.start; i < this.end; i += this.step) yield i; }
}
console.log([...new Range(0, 10, 3)], Array.from(new Range(1, 4), (x) => x * x));
async function* ticker(n) { for (let i = 0; i < n; i++) { await null; yield i; } }
(async () => { const seen = []; for await (const t of ticker(3)) seen.push(t); console.log('async gen', seen); })();
