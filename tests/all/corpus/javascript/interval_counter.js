// Counts three ticks of an interval, then clears it. As a context cell it prints nothing: a
// cell waits for its timeouts, not its intervals (they go on firing during later cells).
let ticks = 0;
const id = setInterval(() => {
  ticks += 1;
  console.log(`tick ${ticks}`);
  if (ticks === 3) { clearInterval(id); console.log('stopped'); }
}, 5);
const t = setTimeout(() => console.log('never'), 1000);
clearTimeout(t);
