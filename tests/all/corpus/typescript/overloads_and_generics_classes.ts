function format(value: number): string;
function format(value: Date): string;
function format(value: number | Date): string {
  return typeof value === 'number' ? value.toFixed(1) : value.toISOString().slice(0, 10);
}
class Stack<T> {
  private items: T[] = [];
  push(...values: T[]): void { this.items.push(...values); }
  pop(): T | undefined { return this.items.pop(); }
  get size(): number { return this.items.length; }
}
const stack = new Stack<number>();
stack.push(1, 2, 3);
console.log(stack.pop(), stack.size, format(2), format(new Date(Date.UTC(2024, 4, 1))));
import type { Readable } from 'stream';
let r: Readable | null = null;
console.log(r);
