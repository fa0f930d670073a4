// An ES module, as Node 22 detects one: imports of built-ins, exports, top-level await (its .out is what Node 20 printed for it run as an .mjs file).
import fs from 'node:fs';
import { join, basename as base } from 'path';
import * as os from 'os';
import { setTimeout as sleep } from 'timers/promises';

export function shout(text) {
  return text.toUpperCase() + '!';
}

export const report = { lines: 0 };

const file = join('/tmp', 'notes.txt');
fs.writeFileSync(file, 'alpha\nbeta\ngamma\n');
report.lines = fs.readFileSync(file, 'utf8').trim().split('\n').length;
console.log(base(file), report.lines, os.EOL === '\n');

const value = await sleep(5, 'slept');
console.log(shout(value));

const { createHash } = await import('crypto');
console.log(createHash('sha256').update('abc').digest('hex').slice(0, 16));
console.log(new URL(import.meta.url).protocol);

for await (const n of [Promise.resolve(1), 2]) console.log('item', n);
export default report;
