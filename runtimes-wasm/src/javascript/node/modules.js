// `require` of the built-in modules, `os`, `util`, `assert`, `structuredClone`, and the
// globals. A module Node has but this guest cannot (child_process, net, http, worker_threads,
// ...) is refused by name with a pointer to the container backend.
function unsupported(what) {
  const error = new Error(`${what} is not available in SoulBox's WebAssembly JavaScript; run this code with the container backend for a full Node.js`);
  error.code = "ERR_NOT_AVAILABLE";
  return error;
}

const osModule = {
  EOL: "\n",
  devNull: "/dev/null",
  constants: { signals: {}, errno: {} },
  platform: () => "linux",
  type: () => "Linux",
  arch: () => "wasm32",
  machine: () => "wasm32",
  release: () => "6.0.0-soulbox",
  version: () => "SoulBox WebAssembly",
  hostname: () => "soulbox",
  homedir: () => process.env.HOME || "/",
  tmpdir: () => (process.env.TMPDIR || "/tmp").replace(/(.)\/$/, "$1"),
  endianness: () => "LE",
  uptime: () => Math.floor(nowMs() / 1000),
  loadavg: () => [0, 0, 0],
  cpus: () => [{ model: "WebAssembly", speed: 0, times: { user: 0, nice: 0, sys: 0, idle: 0, irq: 0 } }],
  availableParallelism: () => 1,
  totalmem: () => 2 ** 32,
  freemem: () => 0,
  networkInterfaces: () => ({}),
  userInfo: () => ({ uid: 0, gid: 0, username: "user", homedir: process.env.HOME || "/", shell: null }),
};

function isDeepStrictEqual(a, b, seen = new Map()) {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (seen.get(a) === b) return true;
  seen.set(a, b);
  if (a instanceof Date) return a.getTime() === b.getTime();
  if (a instanceof RegExp) return String(a) === String(b);
  if (a instanceof Map || a instanceof Set) {
    if (a.size !== b.size) return false;
    if (a instanceof Set) return [...a].every((x) => b.has(x) || [...b].some((y) => isDeepStrictEqual(x, y, seen)));
    return [...a].every(([k, v]) => b.has(k) && isDeepStrictEqual(v, b.get(k), seen));
  }
  if (ArrayBuffer.isView(a)) return a.length === b.length && a.every((x, i) => Object.is(x, b[i]));
  const keysA = Reflect.ownKeys(a).filter((k) => Object.prototype.propertyIsEnumerable.call(a, k));
  const keysB = Reflect.ownKeys(b).filter((k) => Object.prototype.propertyIsEnumerable.call(b, k));
  if (keysA.length !== keysB.length) return false;
  return keysA.every((k) => Object.prototype.hasOwnProperty.call(b, k) && isDeepStrictEqual(a[k], b[k], seen));
}

class AssertionError extends Error {
  constructor(options) {
    super(options.message);
    this.name = "AssertionError";
    this.code = "ERR_ASSERTION";
    this.actual = options.actual;
    this.expected = options.expected;
    this.operator = options.operator;
    this.generatedMessage = !options.userMessage;
  }
}

const assertModule = (() => {
  const fail = (actual, expected, message, operator, fallback) => {
    if (message instanceof Error) throw message;
    throw new AssertionError({ message: message === undefined ? fallback : message, actual, expected, operator, userMessage: message !== undefined });
  };
  const show = (v) => inspect(v);
  function ok(value, message) { if (!value) fail(value, true, message, "==", `The expression evaluated to a falsy value:\n\n  assert.ok(${show(value)})\n`); }
  const assert = (value, message) => ok(value, message);
  function matches(error, expected) {
    if (expected === undefined) return true;
    if (typeof expected === "function") {
      if (expected.prototype !== undefined && error instanceof expected) return true;
      if (Error.isPrototypeOf(expected) || expected === Error) return false;
      return expected(error) === true;
    }
    if (expected instanceof RegExp) return expected.test(String(error));
    return Object.keys(expected).every((k) => expected[k] instanceof RegExp ? expected[k].test(error[k]) : isDeepStrictEqual(error[k], expected[k]));
  }
  Object.assign(assert, {
    AssertionError,
    ok,
    fail: (message = "Failed") => fail(undefined, undefined, message, "fail", message),
    equal: (a, b, m) => { if (!(a == b || (a !== a && b !== b))) fail(a, b, m, "==", `${show(a)} == ${show(b)}`); },
    notEqual: (a, b, m) => { if (a == b) fail(a, b, m, "!=", `${show(a)} != ${show(b)}`); },
    strictEqual: (a, b, m) => { if (!Object.is(a, b)) fail(a, b, m, "strictEqual", `Expected values to be strictly equal:\n\n${show(a)} !== ${show(b)}\n`); },
    notStrictEqual: (a, b, m) => { if (Object.is(a, b)) fail(a, b, m, "notStrictEqual", `Expected "actual" to be strictly unequal to: ${show(b)}`); },
    deepEqual: (a, b, m) => { if (!isDeepStrictEqual(a, b)) fail(a, b, m, "deepEqual", `Expected values to be loosely deep-equal:\n\n${show(a)}\n\nshould loosely deep-equal\n\n${show(b)}`); },
    deepStrictEqual: (a, b, m) => { if (!isDeepStrictEqual(a, b)) fail(a, b, m, "deepStrictEqual", `Expected values to be strictly deep-equal:\n${show(a)}\n\nshould equal\n\n${show(b)}`); },
    notDeepStrictEqual: (a, b, m) => { if (isDeepStrictEqual(a, b)) fail(a, b, m, "notDeepStrictEqual", `Expected "actual" not to be strictly deep-equal to: ${show(b)}`); },
    throws(fn, expected, message) {
      if (typeof expected === "string") { message = expected; expected = undefined; }
      try { fn(); } catch (error) {
        if (!matches(error, expected)) throw error;
        return;
      }
      fail(undefined, expected, message, "throws", "Missing expected exception.");
    },
    doesNotThrow(fn, message) { try { fn(); } catch (error) { fail(error, undefined, message, "doesNotThrow", `Got unwanted exception.\nActual message: "${error && error.message}"`); } },
    async rejects(promise, expected, message) {
      try { await (typeof promise === "function" ? promise() : promise); } catch (error) {
        if (!matches(error, expected)) throw error;
        return;
      }
      fail(undefined, expected, message, "rejects", "Missing expected rejection.");
    },
    async doesNotReject(promise, message) {
      try { await (typeof promise === "function" ? promise() : promise); } catch (error) { fail(error, undefined, message, "doesNotReject", "Got unwanted rejection."); }
    },
    match: (s, re, m) => { if (!re.test(s)) fail(s, re, m, "match", `The input did not match the regular expression ${re}. Input:\n\n${show(s)}\n`); },
    doesNotMatch: (s, re, m) => { if (re.test(s)) fail(s, re, m, "doesNotMatch", `The input was expected to not match the regular expression ${re}. Input:\n\n${show(s)}\n`); },
  });
  assert.strict = assert;
  return assert;
})();

function promisify(fn) {
  if (typeof fn !== "function") throw new TypeError('The "original" argument must be of type function');
  return (...args) => new Promise((resolve, reject) => fn(...args, (error, value) => (error ? reject(error) : resolve(value))));
}

const utilModule = {
  format, formatWithOptions, inspect, promisify, isDeepStrictEqual,
  callbackify: (fn) => (...args) => { const cb = args.pop(); fn(...args).then((v) => cb(null, v), (e) => cb(e)); },
  inherits(ctor, superCtor) { Object.setPrototypeOf(ctor.prototype, superCtor.prototype); Object.setPrototypeOf(ctor, superCtor); ctor.super_ = superCtor; },
  deprecate: (fn) => fn,
  isArray: Array.isArray,
  types: {
    isDate: (v) => v instanceof Date, isRegExp: (v) => v instanceof RegExp, isMap: (v) => v instanceof Map,
    isSet: (v) => v instanceof Set, isPromise: (v) => v instanceof Promise, isTypedArray: (v) => v instanceof TYPED_ARRAY,
    isUint8Array: (v) => v instanceof Uint8Array, isArrayBuffer: (v) => v instanceof ArrayBuffer, isNativeError: (v) => v instanceof Error,
    isAsyncFunction: (v) => typeof v === "function" && v.constructor && v.constructor.name === "AsyncFunction",
  },
  TextEncoder, TextDecoder,
  stripVTControlCharacters: (s) => s.replace(/\u001b\[[0-9;]*[A-Za-z]/g, ""),
  styleText: (_format, text) => text,
};

function structuredClone(value, options) {
  const memory = new Map();
  const fail = (what) => { throw new DOMException(`${what} could not be cloned.`, "DataCloneError"); };
  const clone = (v) => {
    if (typeof v === "function") fail(formatFunction(v));
    if (typeof v === "symbol") fail(v.toString());
    if (v === null || typeof v !== "object") return v;
    if (memory.has(v)) return memory.get(v);
    let out;
    if (Array.isArray(v)) { out = new Array(v.length); memory.set(v, out); v.forEach((x, i) => { out[i] = clone(x); }); return out; }
    if (v instanceof Date) out = new Date(v.getTime());
    else if (v instanceof RegExp) out = new RegExp(v.source, v.flags);
    else if (v instanceof ArrayBuffer) out = v.slice(0);
    else if (ArrayBuffer.isView(v)) {
      const buffer = clone(v.buffer);
      out = v instanceof DataView ? new DataView(buffer, v.byteOffset, v.byteLength)
        : new (v instanceof Buffer ? Uint8Array : v.constructor)(buffer, v.byteOffset, v.length);
    } else if (v instanceof Map) { out = new Map(); memory.set(v, out); for (const [k, x] of v) out.set(clone(k), clone(x)); return out; }
    else if (v instanceof Set) { out = new Set(); memory.set(v, out); for (const x of v) out.add(clone(x)); return out; }
    else if (v instanceof Error) {
      const Ctor = [EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError].find((c) => v instanceof c) || Error;
      out = new Ctor(v.message);
      if (v.stack !== undefined) out.stack = v.stack;
      if ("cause" in v) out.cause = clone(v.cause);
    } else if (v instanceof Number || v instanceof String || v instanceof Boolean) out = Object(v.valueOf());
    else if (v instanceof Promise || v instanceof WeakMap || v instanceof WeakSet) fail(`#<${constructorName(v)}>`);
    else {
      out = {};
      memory.set(v, out);
      for (const key of Object.keys(v)) out[key] = clone(v[key]);
      return out;
    }
    memory.set(v, out);
    return out;
  };
  if (options && options.transfer && options.transfer.length) throw unsupported("structuredClone's transfer option");
  return clone(value);
}

const BUILTINS = {
  fs: () => fs,
  "fs/promises": () => fsPromises,
  path: () => pathModule,
  "path/posix": () => pathModule,
  os: () => osModule,
  util: () => utilModule,
  events: () => eventsModule,
  assert: () => assertModule,
  "assert/strict": () => assertModule,
  buffer: () => ({ Buffer, constants: { MAX_LENGTH: 2 ** 31 }, kMaxLength: 2 ** 31, atob, btoa }),
  crypto: () => ({ randomBytes, randomUUID, randomInt, getRandomValues, createHash: (name) => new Hash(name),
    createHmac: (name, key) => new Hmac(name, key), webcrypto: webCrypto, getHashes: () => ["md5", "sha1", "sha256"] }),
  url: () => ({ URL, URLSearchParams, fileURLToPath: (u) => decodeURIComponent(new URL(u).pathname),
    pathToFileURL: (p) => new URL("file://" + encodePath(pathModule.resolve(p))) }),
  timers: () => ({ setTimeout, setInterval, setImmediate, clearTimeout, clearInterval, clearImmediate }),
  "timers/promises": () => ({
    setTimeout: (ms, value) => new Promise((resolve) => setTimeout(resolve, ms, value)),
    setImmediate: (value) => new Promise((resolve) => setImmediate(resolve, value)),
  }),
  process: () => process,
  string_decoder: () => ({
    StringDecoder: class StringDecoder {
      #decoder;
      constructor(encoding = "utf8") { this.encoding = normalizeEncoding(encoding); this.#decoder = this.encoding === "utf8" ? new TextDecoder() : null; }
      write(bytes) { return this.#decoder ? this.#decoder.decode(bytes, { stream: true }) : Buffer.from(bytes).toString(this.encoding); }
      end(bytes) { return (bytes ? this.write(bytes) : "") + (this.#decoder ? this.#decoder.decode() : ""); }
    },
  }),
};
const UNAVAILABLE = ["child_process", "cluster", "dgram", "dns", "http", "http2", "https", "inspector", "net", "readline",
  "repl", "stream", "tls", "tty", "v8", "vm", "worker_threads", "zlib", "perf_hooks", "async_hooks", "module", "sqlite", "test"];
const loaded = new Map();

function require(name) {
  if (typeof name !== "string") throw new TypeError(`The "id" argument must be of type string. Received ${inspect(name)}`);
  const id = name.startsWith("node:") ? name.slice(5) : name;
  if (Object.prototype.hasOwnProperty.call(BUILTINS, id)) {
    if (!loaded.has(id)) loaded.set(id, BUILTINS[id]());
    return loaded.get(id);
  }
  if (UNAVAILABLE.includes(id)) throw unsupported(`The Node.js module '${name}'`);
  const error = new Error(`Cannot find module '${name}'\nSoulBox's WebAssembly JavaScript has the built-in modules ${Object.keys(BUILTINS).join(", ")}; npm packages are not installed`);
  error.code = "MODULE_NOT_FOUND";
  throw error;
}
require.resolve = (name) => { require(name); return name.startsWith("node:") ? name : `node:${name}`; };
require.cache = {};

// `import(name)` in a program (rewritten on the host, `esm.rs`): a promise of the module's
// namespace, its exports plus `default` (the module itself), as Node gives for CommonJS.
async function dynamicImport(name) {
  const exported = require(String(name));
  return Object.freeze(Object.assign(Object.create(null), exported, { default: exported }));
}

const define = (name, value) =>
  Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });
define("console", console);
define("process", process);
define("Buffer", Buffer);
define("TextEncoder", TextEncoder);
define("TextDecoder", TextDecoder);
define("URL", URL);
define("URLSearchParams", URLSearchParams);
define("structuredClone", structuredClone);
define("crypto", webCrypto);
define("require", require);
define("__soulbox_import", dynamicImport);
define("global", globalThis);
define("fetch", fetch);
define("Headers", Headers);
define("Request", Request);
define("Response", Response);
define("AbortController", AbortController);
define("AbortSignal", AbortSignal);
define("__soulbox_fetch_take", fetchTake);
define("__soulbox_fetch_settle", fetchSettle);
installIntl();
const module = { exports: {}, id: ".", filename: "/[eval]", loaded: false, children: [], paths: [], require };
define("module", module);
define("exports", module.exports);
define("__filename", "/[eval]");
define("__dirname", "/");
define("performance", {
  now: nowMs,
  timeOrigin: Date.now(),
  mark: () => undefined,
  measure: () => undefined,
  toJSON() { return { timeOrigin: this.timeOrigin }; },
  [Symbol.toStringTag]: "Performance",
});

// Called by the host in every new guest (and every fork), before any user code: fresh
// entropy, the request's arguments and environment, the clocks' origin, and whether `fetch`
// may ask the host (the execution has a network policy).
define("__soulbox_begin", (seed, args, network) => {
  random.reseed(seed);
  net.enabled = network === true;
  clock.origin = os.now();
  globalThis.performance.timeOrigin = Date.now();
  process.argv = ["/usr/local/bin/node", "[eval]", ...args];
  globalThis.scriptArgs = args;
  process.env = std.getenviron();
});
define("__soulbox_reseed", (seed) => random.reseed(seed));
define("__soulbox_network", (enabled) => { net.enabled = enabled === true; });
define("__soulbox_finish", finish);
