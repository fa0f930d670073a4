const fs = require('fs');
fs.writeFile('cb.txt', 'hello callbacks', (err) => {
  if (err) throw err;
  fs.readFile('cb.txt', 'utf8', (err, data) => {
    console.log(err, data.toUpperCase());
    fs.unlink('cb.txt', () => console.log('removed'));
  });
});
console.log('scheduled');
