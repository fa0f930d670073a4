const args = process.argv.slice(2);
console.log(args.length, typeof process.env, process.platform, typeof process.cwd());
console.log(process.exitCode, typeof process.hrtime.bigint(), Array.isArray(process.hrtime()));
process.stdout.write('no newline');
process.stdout.write(' then newline\n');
