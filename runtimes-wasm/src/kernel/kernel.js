// SoulBox's JavaScript kernel driver, evaluated once per context (after the prelude). `cell(code)` evaluates a cell
// as a global script (so `let`, `const`, functions and classes persist, as in a REPL) and keeps
// its completion value or exception; after the host has run the promise jobs, `report()` writes
// one JSON line describing it to stdout, which the host captures instead of streaming.
(() => {
  let last = { value: undefined, error: undefined, pending: false, thrown: false };

  // Values are shown as Node's REPL shows them (the prelude's util.inspect), captured now so
  // a cell that reassigns `require` cannot change how results are reported.
  const { inspect } = require("util");
  const drainTicks = globalThis.__soulbox_drain_ticks;

  function formats(v) {
    const out = { text: inspect(v) };
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
    try { value = inspect(e); } catch (_) { value = String(e); }
    return { name: "Error", value: "Uncaught " + value, traceback: "Uncaught " + value };
  }

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
          // As Node: the cell's process.nextTick callbacks run before its promise jobs.
          drainTicks();
        } catch (e) {
          last.error = e;
          last.thrown = true;
        }
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
