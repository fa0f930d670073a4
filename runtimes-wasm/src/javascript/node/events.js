// EventEmitter (Node's `events`), also the base of `process`.
class EventEmitter {
  static defaultMaxListeners = 10;
  #events = new Map();
  #max = EventEmitter.defaultMaxListeners;
  on(name, listener) { return this.#add(name, listener, false); }
  addListener(name, listener) { return this.#add(name, listener, false); }
  prependListener(name, listener) { return this.#add(name, listener, true); }
  once(name, listener) { return this.#add(name, this.#wrapOnce(name, listener), false); }
  prependOnceListener(name, listener) { return this.#add(name, this.#wrapOnce(name, listener), true); }
  off(name, listener) { return this.removeListener(name, listener); }
  removeListener(name, listener) {
    const list = this.#events.get(name);
    if (!list) return this;
    const index = list.findLastIndex((l) => l === listener || l.listener === listener);
    if (index >= 0) {
      list.splice(index, 1);
      if (list.length === 0) this.#events.delete(name);
      if (this.#events.has("removeListener")) this.emit("removeListener", name, listener);
    }
    return this;
  }
  removeAllListeners(name) {
    if (name === undefined) this.#events.clear();
    else this.#events.delete(name);
    return this;
  }
  emit(name, ...args) {
    const list = this.#events.get(name);
    if (!list || list.length === 0) {
      if (name === "error") {
        const error = args[0];
        if (error instanceof Error) throw error;
        const wrapped = new Error(`Unhandled error. (${inspect(error)})`);
        wrapped.code = "ERR_UNHANDLED_ERROR";
        wrapped.context = error;
        throw wrapped;
      }
      return false;
    }
    for (const listener of [...list]) listener.apply(this, args);
    return true;
  }
  listeners(name) { return (this.#events.get(name) || []).map((l) => l.listener || l); }
  rawListeners(name) { return [...(this.#events.get(name) || [])]; }
  listenerCount(name) { return (this.#events.get(name) || []).length; }
  eventNames() { return [...this.#events.keys()]; }
  setMaxListeners(n) { this.#max = n; return this; }
  getMaxListeners() { return this.#max; }
  #add(name, listener, prepend) {
    if (typeof listener !== "function") {
      throw new TypeError(`The "listener" argument must be of type function. Received ${listener === null ? "null" : typeof listener}`);
    }
    if (this.#events.has("newListener")) this.emit("newListener", name, listener.listener || listener);
    let list = this.#events.get(name);
    if (!list) this.#events.set(name, (list = []));
    if (prepend) list.unshift(listener);
    else list.push(listener);
    return this;
  }
  #wrapOnce(name, listener) {
    const emitter = this;
    function once(...args) {
      emitter.removeListener(name, once);
      return listener.apply(this, args);
    }
    once.listener = listener;
    return once;
  }
}

function onceEvent(emitter, name) {
  return new Promise((resolve, reject) => {
    const onError = (error) => { emitter.removeListener(name, onEvent); reject(error); };
    const onEvent = (...args) => { if (name !== "error") emitter.removeListener("error", onError); resolve(args); };
    emitter.once(name, onEvent);
    if (name !== "error") emitter.once("error", onError);
  });
}

const eventsModule = Object.assign(EventEmitter, { EventEmitter, once: onceEvent, default: EventEmitter });
