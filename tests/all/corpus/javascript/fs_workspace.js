const fs = require('fs');
const path = require('path');
fs.mkdirSync('reports/2024', { recursive: true });
const rows = [['name', 'score'], ['ada', 93], ['bob', 78], ['cy', 88]];
fs.writeFileSync(path.join('reports', '2024', 'scores.csv'), rows.map((r) => r.join(',')).join('\n') + '\n');
const text = fs.readFileSync('reports/2024/scores.csv', 'utf8');
const [header, ...lines] = text.trim().split('\n');
const records = lines.map((line) => Object.fromEntries(line.split(',').map((v, i) => [header.split(',')[i], isNaN(v) ? v : Number(v)])));
console.log(records);
const average = records.reduce((s, r) => s + r.score, 0) / records.length;
fs.writeFileSync('reports/summary.json', JSON.stringify({ average, count: records.length }, null, 2));
console.log(fs.readdirSync('reports'), fs.existsSync('reports/summary.json'));
console.log(JSON.parse(fs.readFileSync('reports/summary.json', 'utf8')));
console.log(fs.statSync('reports/2024/scores.csv').size);
try {
  fs.readFileSync('missing.txt', 'utf8');
} catch (error) {
  console.log(error.code);
}
fs.rmSync('reports', { recursive: true });
console.log(fs.existsSync('reports'));
