const path = require('path');
console.log(path.join('/srv', 'app', '..', 'data', 'file.txt'));
console.log(path.basename('/tmp/report.final.pdf'), path.basename('/tmp/report.pdf', '.pdf'), path.extname('archive.tar.gz'));
console.log(path.dirname('/a/b/c.txt'), path.normalize('/a//b/./c/../d'), path.isAbsolute('rel/path'));
console.log(path.parse('/home/user/notes.md'));
console.log(path.relative('/data/in/raw', '/data/out'), path.format({ dir: '/out', name: 'result', ext: '.json' }));
console.log(path.sep, path.delimiter);
