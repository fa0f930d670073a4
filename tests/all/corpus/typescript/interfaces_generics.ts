interface User {
  id: number;
  name: string;
  email?: string;
}
type Result<T> = { ok: true; value: T } | { ok: false; error: string };
function find<T extends { id: number }>(items: T[], id: number): Result<T> {
  const item = items.find((i) => i.id === id);
  return item ? { ok: true, value: item } : { ok: false, error: `no item ${id}` };
}
const users: User[] = [{ id: 1, name: 'Ada' }, { id: 2, name: 'Linus', email: 'l@k.org' }];
const found = find<User>(users, 2);
if (found.ok) console.log(found.value.name, found.value.email);
const missing = find(users, 9);
if (!missing.ok) console.log(missing.error);
function pair<A, B>(a: A, b: B): [A, B] { return [a, b]; }
console.log(pair<string, number>('x', 1));
