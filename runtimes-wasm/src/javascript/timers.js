// Timers for the QuickJS guest: setTimeout, setInterval, setImmediate and their clear*
// functions, and process.nextTick's queue, as in Node. Evaluated in every JavaScript guest before any user code. The host
// runs the event loop (runtimes-wasm/src/javascript/event_loop.rs): it drains the promise jobs,
// then calls __soulbox_tick, which runs the earliest due timer and says how long to wait for
// the next one.
(() => {
  const MAX_DELAY = 2147483647;
  const MAX_WAIT_US = 2147483647;
  const timers = new Map();
  let lastId = 0;
  let lastOrder = 0;

  class Timeout {
    constructor(callback, delay, args, kind) {
      this.id = ++lastId;
      this.callback = callback;
      this.args = args;
      this.kind = kind; // "timeout", "interval" or "immediate"
      this.delay = delay;
      this.referenced = true;
      this.schedule(performance.now() + delay);
    }
    schedule(due) {
      this.due = due;
      this.order = ++lastOrder;
      timers.set(this.id, this);
    }
    ref() { this.referenced = true; return this; }
    unref() { this.referenced = false; return this; }
    hasRef() { return this.referenced; }
    refresh() { if (timers.has(this.id)) this.schedule(performance.now() + this.delay); return this; }
    close() { timers.delete(this.id); return this; }
    [Symbol.toPrimitive]() { return this.id; }
  }

  function add(callback, delay, args, kind) {
    if (typeof callback !== "function") {
      throw new TypeError(`The "callback" argument must be of type function. Received ${typeof callback}`);
    }
    delay = Number(delay);
    // As Node: a delay below 1 ms, past the 32-bit limit or not a number is 1 ms.
    if (kind !== "immediate" && !(delay >= 1 && delay <= MAX_DELAY)) delay = 1;
    return new Timeout(callback, kind === "immediate" ? 0 : Math.trunc(delay), args, kind);
  }

  function clear(timer) {
    if (timer instanceof Timeout) timers.delete(timer.id);
    else if (timer !== undefined && timer !== null) timers.delete(Number(timer));
  }

  // process.nextTick's queue: drained after the script and after each timer (the host and
  // __soulbox_tick call __soulbox_drain_ticks), before the promise jobs, as in Node; a tick
  // queued elsewhere (in a promise job) is drained by a microtask.
  const ticks = [];
  let drainQueued = false;
  function drainTicks() {
    drainQueued = false;
    while (ticks.length) {
      const [callback, args] = ticks.shift();
      callback(...args);
    }
  }
  function nextTick(callback, ...args) {
    if (typeof callback !== "function") {
      throw new TypeError(`The "callback" argument must be of type function. Received ${typeof callback}`);
    }
    ticks.push([callback, args]);
    if (!drainQueued) {
      drainQueued = true;
      queueMicrotask(drainTicks);
    }
  }

  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
  define("setTimeout", (callback, delay, ...args) => add(callback, delay, args, "timeout"));
  define("setInterval", (callback, delay, ...args) => add(callback, delay, args, "interval"));
  define("setImmediate", (callback, ...args) => add(callback, 0, args, "immediate"));
  define("clearTimeout", clear);
  define("clearInterval", clear);
  define("clearImmediate", clear);
  define("__soulbox_next_tick", nextTick);
  define("__soulbox_drain_ticks", drainTicks);

  // Runs the earliest due timer. Returns 0 when it ran one, the microseconds until the next
  // one is due (at most MAX_WAIT_US: the host asks again after that long), or -1 when no timer
  // keeps the loop alive: none is left, or only unreferenced ones (and, unless
  // `intervalsKeepAlive`, intervals). While `hostBusy` (requests in flight keep the loop
  // alive anyway), every timer counts, so an unreferenced one (`AbortSignal.timeout`) fires.
  define("__soulbox_tick", (intervalsKeepAlive, hostBusy) => {
    let next = null;
    let alive = false;
    for (const timer of timers.values()) {
      if (hostBusy || (timer.referenced && (intervalsKeepAlive || timer.kind !== "interval"))) alive = true;
      if (next === null || timer.due < next.due || (timer.due === next.due && timer.order < next.order)) next = timer;
    }
    if (!alive) return -1;
    const wait = next.due - performance.now();
    if (wait > 0) return Math.min(MAX_WAIT_US, Math.ceil(wait * 1000)) | 0;
    if (next.kind === "interval") next.schedule(Math.max(next.due + next.delay, performance.now()));
    else timers.delete(next.id);
    next.callback.apply(globalThis, next.args);
    drainTicks();
    return 0;
  });
})();
