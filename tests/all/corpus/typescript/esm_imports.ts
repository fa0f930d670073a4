import { writeFileSync, readFileSync } from 'fs';
import type { PathLike } from 'fs';
import * as path from 'path';

export interface Row { name: string; score: number }
export enum Grade { Low = 'low', High = 'high' }

export function grade(row: Row): Grade {
  return row.score >= 50 ? Grade.High : Grade.Low;
}

const rows: Row[] = [{ name: 'ada', score: 91 }, { name: 'bob', score: 42 }];
const file: PathLike = path.join('/tmp', 'rows.json');
writeFileSync(file, JSON.stringify(rows));
const loaded = JSON.parse(readFileSync(file, 'utf8')) as Row[];
const wait = (ms: number) => new Promise<number>((resolve) => setTimeout(() => resolve(ms), ms));
console.log(await wait(3), loaded.map((r) => `${r.name}:${grade(r)}`).join(' '));
