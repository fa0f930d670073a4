const fs = require('fs/promises');
async function main() {
  await fs.writeFile('notes.txt', 'first\n');
  await fs.appendFile('notes.txt', 'second\n');
  const content = await fs.readFile('notes.txt', 'utf8');
  console.log(content.split('\n').filter(Boolean));
  const stat = await fs.stat('notes.txt');
  console.log(stat.isFile(), stat.size);
  await fs.unlink('notes.txt');
  await fs.access('notes.txt').catch((e) => console.log('gone:', e.code));
}
main();
