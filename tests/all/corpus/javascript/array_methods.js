const people = [
  { name: 'Ann', age: 31, dept: 'eng' }, { name: 'Bo', age: 25, dept: 'ops' },
  { name: 'Cid', age: 42, dept: 'eng' }, { name: 'Dee', age: 28, dept: 'sales' },
];
console.log(people.filter((p) => p.dept === 'eng').map((p) => p.name));
console.log([...people].sort((a, b) => a.age - b.age).map((p) => `${p.name}:${p.age}`).join(', '));
console.log(people.some((p) => p.age > 40), people.every((p) => p.age > 20), people.find((p) => p.age < 26));
console.log(people.findLast((p) => p.dept === 'eng').name, people.at(-1).name);
const byDept = people.reduce((acc, p) => { (acc[p.dept] ??= []).push(p.name); return acc; }, {});
console.log(byDept);
console.log([[1, 2], [3, [4, 5]]].flat(Infinity), [1, 2, 3].flatMap((x) => [x, x * 2]));
console.log(Array.from({ length: 5 }, (_, i) => i ** 2), [3, 1, 2].toSorted(), [1, 2, 3].toReversed(), [1, 2, 3].with(1, 9));
console.log(Object.entries({ a: 1, b: 2 }).map(([k, v]) => `${k}=${v}`), Object.fromEntries([['x', 1]]));
