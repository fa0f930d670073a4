// SoulBox's JavaScript kernel driver, evaluated once per context. `cell(code)` evaluates a cell
// as a global script (so `let`, `const`, functions and classes persist, as in a REPL) and keeps
// its completion value or exception; after the host has run the promise jobs, `report()` writes
// one JSON line describing it to stdout, which the host captures instead of streaming.
(() => {
  const MAX_DEPTH = 4;
  let last = { value: undefined, error: undefined, pending: false, thrown: false };

  function quote(s) {
    return "'" + s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n") + "'";
  }

  function inspect(v, depth, seen) {
    if (typeof v === "string") return quote(v);
    if (typeof v === "bigint") return v + "n";
    if (typeof v === "symbol" || typeof v === "number" || typeof v === "boolean" || v == null) return String(v);
    if (typeof v === "function") return "[Function: " + (v.name || "(anonymous)") + "]";
    if (seen.has(v)) return "[Circular]";
    if (v instanceof Error) return v.stack ? v.name + ": " + v.message + "\n" + v.stack : String(v);
    if (v instanceof Date) return v.toISOString();
    if (v instanceof RegExp) return String(v);
    if (depth >= MAX_DEPTH) return Array.isArray(v) ? "[Array]" : "[Object]";
    seen.add(v);
    let text;
    if (Array.isArray(v)) {
      text = "[ " + v.map((x) => inspect(x, depth + 1, seen)).join(", ") + " ]";
      if (v.length === 0) text = "[]";
    } else if (v instanceof Map) {
      text = "Map(" + v.size + ") { " + [...v].map(([k, x]) => inspect(k, depth + 1, seen) + " => " + inspect(x, depth + 1, seen)).join(", ") + " }";
    } else if (v instanceof Set) {
      text = "Set(" + v.size + ") { " + [...v].map((x) => inspect(x, depth + 1, seen)).join(", ") + " }";
    } else if (typeof v.then === "function") {
      text = "Promise { <pending> }";
    } else {
      const keys = Object.keys(v);
      const name = v.constructor && v.constructor !== Object && v.constructor.name ? v.constructor.name + " " : "";
      text = keys.length === 0 ? name + "{}" : name + "{ " + keys.map((k) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : quote(k)) + ": " + inspect(v[k], depth + 1, seen)).join(", ") + " }";
    }
    seen.delete(v);
    return text;
  }

  function formats(v) {
    const out = { text: inspect(v, 0, new Set()) };
    if (v !== null && typeof v === "object" && !(v instanceof Error)) {
      try {
        const json = JSON.stringify(v);
        if (json !== undefined) out.json = JSON.parse(json);
      } catch (e) {}
    }
    return out;
  }

  function describe(e) {
    if (e instanceof Error) {
      const head = e.name + ": " + e.message;
      return { name: e.name, value: String(e.message), traceback: e.stack ? head + "\n" + e.stack : head };
    }
    let value;
    try { value = inspect(e, 0, new Set()); } catch (_) { value = String(e); }
    return { name: "Error", value: "Uncaught " + value, traceback: "Uncaught " + value };
  }

  const rotl = (x, k) => (x << k) | (x >>> (32 - k));

  Object.defineProperty(globalThis, "__soulbox", {
    enumerable: false,
    value: Object.freeze({
      cell(code) {
        last = { value: undefined, error: undefined, pending: false, thrown: false };
        // Top-level `await` needs an async script, whose promise resolves to `{ value }`.
        const isAsync = /\bawait\b/.test(code);
        try {
          const value = std.evalScript(code, { backtrace_barrier: true, async: isAsync });
          if (value !== null && typeof value === "object" && typeof value.then === "function") {
            last.pending = true;
            value.then(
              (v) => { last.value = isAsync && v ? v.value : v; last.pending = false; },
              (e) => { last.error = e; last.thrown = true; last.pending = false; },
            );
          } else {
            last.value = value;
          }
        } catch (e) {
          last.error = e;
          last.thrown = true;
        }
      },
      // A fork's fresh entropy: Math.random's state is part of a checkpoint, so each fork
      // gets a generator of its own (xoshiro128**, seeded by the host with four words).
      reseed(s0, s1, s2, s3) {
        let a = s0 | 0, b = s1 | 0, c = s2 | 0, d = s3 | 0;
        if ((a | b | c | d) === 0) a = 1;
        const next = () => {
          const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
          const t = b << 9;
          c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = rotl(d, 11);
          return result;
        };
        Math.random = function random() {
          return ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
        };
      },
      flush() {
        std.out.flush();
        std.err.flush();
      },
      report() {
        const out = {};
        if (last.thrown) out.error = describe(last.error);
        else if (last.pending) out.error = { name: "Error", value: "the cell's promise never settled", traceback: "" };
        else if (last.value !== undefined) out.result = formats(last.value);
        last = { value: undefined, error: undefined, pending: false, thrown: false };
        std.out.puts(JSON.stringify(out));
        std.out.flush();
      },
    }),
  });
})();
