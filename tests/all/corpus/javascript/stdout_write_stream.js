const fs = require('fs');
const out = fs.createWriteStream('log.txt');
for (let i = 0; i < 3; i++) out.write(`line ${i}\n`);
out.end('last\n');
out.on('finish', () => {
  process.stdout.write(fs.readFileSync('log.txt', 'utf8'));
  fs.unlinkSync('log.txt');
});
