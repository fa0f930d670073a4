// `process` and `console`. Output goes through QuickJS's buffered `std.out` and `std.err`,
// which the host flushes when the script ends (and `process.exit` flushes first).
function writeTo(file, chunk, encoding) {
  if (typeof chunk === "string") {
    if (encoding && normalizeEncoding(encoding) !== "utf8") chunk = bytesFromString(chunk, encoding);
    else { file.puts(chunk); return; }
  }
  const bytes = toInputBytes(chunk).slice();
  if (bytes.length) file.write(bytes.buffer, 0, bytes.length);
}

function outputStream(file, fd) {
  const stream = new EventEmitter();
  Object.assign(stream, {
    fd, isTTY: false, writable: true, columns: 80, rows: 24,
    write(chunk, encoding, callback) {
      if (typeof encoding === "function") { callback = encoding; encoding = undefined; }
      writeTo(file, chunk, encoding);
      if (callback) queueMicrotask(() => callback(null));
      return true;
    },
    end(chunk, encoding, callback) {
      if (typeof chunk === "function") { callback = chunk; chunk = undefined; }
      if (chunk !== undefined && chunk !== null) stream.write(chunk, encoding);
      if (callback) queueMicrotask(callback);
      return stream;
    },
    getColorDepth: () => 1,
    hasColors: () => false,
  });
  return stream;
}

// stdin is read whole, when first asked for (the guest's stdin is a finite input or empty).
function inputStream() {
  const stream = new EventEmitter();
  let scheduled = false;
  let encoding = null;
  const start = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      const text = std.in.readAsString();
      if (text.length) stream.emit("data", encoding ? text : Buffer.from(text));
      stream.emit("end");
      stream.emit("close");
    });
  };
  Object.assign(stream, {
    fd: 0, isTTY: false, readable: true,
    setEncoding(value) { encoding = value; return stream; },
    resume() { start(); return stream; },
    pause() { return stream; },
    read() { return null; },
    [Symbol.asyncIterator]: async function* () {
      const text = std.in.readAsString();
      if (text.length) yield encoding ? text : Buffer.from(text);
    },
  });
  stream.on("newListener", (name) => { if (name === "data" || name === "end" || name === "readable") start(); });
  return stream;
}

const clock = { origin: 0 };
const nowMs = () => (os.now() - clock.origin) / 1000;

const process = new EventEmitter();
let exited = false;
Object.assign(process, {
  title: "node",
  version: "v22.12.0",
  versions: { node: "22.12.0", quickjs: navigator.userAgent.replace(/^quickjs-ng\//, ""), soulbox: "1" },
  release: { name: "node" },
  platform: "linux",
  arch: "wasm32",
  pid: 1,
  ppid: 0,
  execPath: "/usr/local/bin/node",
  execArgv: [],
  argv0: "node",
  argv: ["/usr/local/bin/node"],
  env: {},
  exitCode: undefined,
  features: {},
  config: { variables: {} },
  stdout: outputStream(std.out, 1),
  stderr: outputStream(std.err, 2),
  stdin: inputStream(),
  cwd() { return os.getcwd()[0]; },
  chdir(directory) {
    const errno = -os.chdir(directory);
    if (errno) throw fsError(errno, "chdir", directory);
  },
  exit(code) {
    if (code !== undefined) process.exitCode = code;
    finish();
    std.exit(Number(process.exitCode) | 0);
  },
  abort() { finish(); std.exit(134); },
  nextTick: globalThis.__soulbox_next_tick,
  hrtime(previous) {
    const ns = BigInt(Math.round(nowMs() * 1e6));
    let seconds = Number(ns / 1000000000n), nanos = Number(ns % 1000000000n);
    if (previous) {
      seconds -= previous[0]; nanos -= previous[1];
      if (nanos < 0) { seconds -= 1; nanos += 1e9; }
    }
    return [seconds, nanos];
  },
  uptime() { return nowMs() / 1000; },
  umask() { return 0o22; },
  getuid() { return 0; },
  getgid() { return 0; },
  geteuid() { return 0; },
  cpuUsage() { const us = Math.round(nowMs() * 1000); return { user: us, system: 0 }; },
  memoryUsage() { throw unsupported("process.memoryUsage"); },
  kill() { throw unsupported("process.kill"); },
  emitWarning(warning, type = "Warning") {
    const text = warning instanceof Error ? `${warning.name}: ${warning.message}` : `${type}: ${warning}`;
    std.err.puts(`(node:1) ${text}\n`);
  },
});
process.hrtime.bigint = () => BigInt(Math.round(nowMs() * 1e6));
process.memoryUsage.rss = () => { throw unsupported("process.memoryUsage.rss"); };

// The end of a script: the `exit` event once, then the buffers flushed; the exit status.
function finish() {
  if (!exited) {
    exited = true;
    try { process.emit("exit", Number(process.exitCode) | 0); } finally { std.out.flush(); std.err.flush(); }
  }
  std.out.flush();
  std.err.flush();
  return Number(process.exitCode) | 0;
}

const console = (() => {
  let indent = "";
  const counts = new Map();
  const timers = new Map();
  const write = (file, args) => {
    let text = formatWithOptions({}, ...args);
    if (indent) text = indent + text.split("\n").join("\n" + indent);
    file.puts(text + "\n");
  };
  const out = (...args) => write(std.out, args);
  const err = (...args) => write(std.err, args);
  const table = (data, columns) => {
    if (data === null || typeof data !== "object") return out(data);
    const rows = data instanceof Map ? [...data.entries()].map(([k, v]) => [k, v]) : Object.entries(data);
    const indexHeader = data instanceof Map ? "(iteration index)" : "(index)";
    const keys = [];
    let hasValues = false;
    for (const [, value] of rows) {
      if (value !== null && typeof value === "object") { for (const key of Object.keys(value)) if (!keys.includes(key)) keys.push(key); }
      else hasValues = true;
    }
    const header = [indexHeader, ...(columns || keys), ...(hasValues ? ["Values"] : [])];
    const cell = (v) => (v === undefined ? "" : formatValue({ depth: 1, seen: [], circular: new Map(), indentationLvl: 0, currentDepth: 0 }, v, 1));
    const body = rows.map(([index, value]) => {
      const isObject = value !== null && typeof value === "object";
      return [String(index), ...(columns || keys).map((k) => (isObject && k in value ? cell(value[k]) : "")), ...(hasValues ? [isObject ? "" : cell(value)] : [])];
    });
    const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)) + 2);
    const line = (l, m, r) => l + widths.map((w) => "─".repeat(w)).join(m) + r;
    const row = (cells) => "│" + cells.map((c, i) => " " + c.padEnd(widths[i] - 1)).join("│") + "│";
    out([line("┌", "┬", "┐"), row(header), line("├", "┼", "┤"), ...body.map(row), line("└", "┴", "┘")].join("\n"));
  };
  return {
    log: out, info: out, debug: out,
    error: err, warn: err,
    trace: (...args) => err(`Trace${args.length ? ": " + formatWithOptions({}, ...args) : ""}\n${new Error().stack.split("\n").slice(1).join("\n").trimEnd()}`),
    dir: (value, options) => out(inspect(value, options)),
    dirxml: out,
    table,
    assert: (condition, ...args) => { if (!condition) err(args.length ? `Assertion failed: ${formatWithOptions({}, ...args)}` : "Assertion failed"); },
    count: (label = "default") => { const n = (counts.get(label) || 0) + 1; counts.set(label, n); out(`${label}: ${n}`); },
    countReset: (label = "default") => counts.set(label, 0),
    time: (label = "default") => { timers.set(label, nowMs()); },
    timeEnd: (label = "default") => {
      if (!timers.has(label)) return err(`Warning: No such label '${label}' for console.timeEnd()`);
      out(`${label}: ${formatDuration(nowMs() - timers.get(label))}`);
      timers.delete(label);
    },
    timeLog: (label = "default", ...data) => {
      if (!timers.has(label)) return err(`Warning: No such label '${label}' for console.timeLog()`);
      out(`${label}: ${formatDuration(nowMs() - timers.get(label))}`, ...data);
    },
    group: (...label) => { if (label.length) out(...label); indent += "  "; },
    groupCollapsed: (...label) => { if (label.length) out(...label); indent += "  "; },
    groupEnd: () => { indent = indent.slice(2); },
    clear: () => {},
  };
})();

function formatDuration(ms) {
  if (ms >= 1000) return `${(ms / 1000).toFixed(3)}s`;
  return `${ms.toFixed(3)}ms`;
}
