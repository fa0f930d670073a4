// exit code: 3
process.on('exit', (code) => console.log(`exiting with ${code}`));
console.log('working');
process.exitCode = 3;
