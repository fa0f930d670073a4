const EventEmitter = require('events');
class Queue extends EventEmitter {
  constructor() { super(); this.items = []; }
  push(item) { this.items.push(item); this.emit('added', item, this.items.length); }
  drain() { while (this.items.length) this.emit('processed', this.items.shift()); this.emit('empty'); }
}
const q = new Queue();
q.on('added', (item, size) => console.log(`added ${item} (size ${size})`));
q.on('processed', (item) => console.log(`processed ${item}`));
q.once('empty', () => console.log('queue empty'));
['a', 'b', 'c'].forEach((x) => q.push(x));
q.drain();
q.drain();
console.log(q.listenerCount('empty'), q.eventNames());
