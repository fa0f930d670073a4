const original = { name: 'config', created: new Date(Date.UTC(2024, 0, 1)), tags: new Set(['a', 'b']), limits: new Map([['cpu', 2]]), nested: { list: [1, [2, 3]] } };
original.self = original;
const copy = structuredClone(original);
copy.nested.list[1].push(4);
console.log(original.nested.list, copy.nested.list);
console.log(copy.created instanceof Date, copy.tags.has('b'), copy.limits.get('cpu'), copy.self === copy);
try { structuredClone({ f() {} }); } catch (error) { console.log(error.name); }
