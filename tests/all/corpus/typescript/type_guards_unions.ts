type Shape = { kind: 'circle'; radius: number } | { kind: 'square'; side: number } | { kind: 'rect'; w: number; h: number };
function area(s: Shape): number {
  switch (s.kind) {
    case 'circle': return Math.PI * s.radius ** 2;
    case 'square': return s.side ** 2;
    case 'rect': return s.w * s.h;
  }
}
function isString(x: unknown): x is string { return typeof x === 'string'; }
const shapes: Shape[] = [{ kind: 'circle', radius: 1 }, { kind: 'square', side: 2 }, { kind: 'rect', w: 2, h: 3 }];
console.log(shapes.map((s) => area(s).toFixed(2)));
const mixed: (string | number)[] = ['a', 1, 'b', 2];
console.log(mixed.filter(isString).join(''), mixed.filter((x): x is number => typeof x === 'number').reduce((a, b) => a + b, 0));
const config = { retries: 3, verbose: true } as const satisfies Record<string, number | boolean>;
let maybe: string | undefined;
console.log(config.retries, maybe ?? 'default', maybe!?.length);
