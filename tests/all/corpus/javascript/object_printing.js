const user = { id: 7, name: 'Ada', roles: ['admin', 'dev'], profile: { city: 'London', tags: { a: 1, b: { c: 2 } } }, active: true, score: null };
console.log(user);
console.log([user.profile, user.roles]);
console.log({ empty: {}, list: [], fn: function named() {}, arrow: () => 1, sym: Symbol('k'), undef: undefined });
console.log(Array.from({ length: 30 }, (_, i) => i * 3));
console.log(['a somewhat long string number one', 'another fairly long string two', 'and a third string']);
console.log(new Error('printed error').message, [1.25, -0, NaN, Infinity]);
console.log({ 'quoted-key': 1, valid: 2, 42: 'num' }, "it's", ["it's"]);
