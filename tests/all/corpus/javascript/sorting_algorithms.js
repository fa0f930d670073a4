function quicksort(xs) {
  if (xs.length <= 1) return xs;
  const [pivot, ...rest] = xs;
  return [...quicksort(rest.filter((x) => x < pivot)), pivot, ...quicksort(rest.filter((x) => x >= pivot))];
}
function binarySearch(xs, target) {
  let lo = 0, hi = xs.length - 1;
  while (lo <= hi) { const mid = (lo + hi) >> 1; if (xs[mid] === target) return mid; if (xs[mid] < target) lo = mid + 1; else hi = mid - 1; }
  return -1;
}
const data = [38, 27, 43, 3, 9, 82, 10, 3];
const sorted = quicksort(data);
console.log(sorted, binarySearch(sorted, 43), binarySearch(sorted, 5));
const primes = [];
for (let n = 2; primes.length < 15; n++) if (primes.every((p) => n % p)) primes.push(n);
console.log(primes);
const matrix = [[1, 2], [3, 4]];
const transpose = (m) => m[0].map((_, i) => m.map((row) => row[i]));
console.log(transpose(matrix), matrix.map((r) => r.reduce((a, b) => a + b)));
