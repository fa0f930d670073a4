interface Product { id: number; name: string; price: number; tags: string[] }
type Draft = Partial<Omit<Product, 'id'>>;
type PriceList = Record<Product['name'], number>;
type Keys = keyof Product;
function update(p: Product, changes: Draft): Product { return { ...p, ...changes }; }
const book: Product = { id: 1, name: 'Book', price: 12.5, tags: ['paper'] };
const cheaper = update(book, { price: 9.99 });
const prices: PriceList = { [cheaper.name]: cheaper.price };
const keys: Keys[] = ['id', 'name'];
console.log(cheaper, prices, keys);
function getProp<T, K extends keyof T>(obj: T, key: K): T[K] { return obj[key]; }
console.log(getProp(book, 'tags'), getProp<Product, 'price'>(cheaper, 'price'));
declare const injected: string;
type Fn = (x: number) => number;
const double: Fn = (x) => x * 2;
console.log(double(21));
