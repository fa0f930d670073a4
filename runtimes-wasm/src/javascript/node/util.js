// util.inspect and util.format, following Node's output: single-quoted strings inside objects,
// `{ a: 1 }`, `[ 1, 2 ]`, entries on one line while they fit in 80 columns (up to three
// nested levels), else one per line indented by two; arrays of more than six short entries
// grouped into aligned columns; `[Object]` past depth 2; `<ref *1>` / `[Circular *1]`.
const BREAK_LENGTH = 80;
const MAX_ARRAY_LENGTH = 100;
const MAX_STRING_LENGTH = 10000;
const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;
const TYPED_ARRAY = Object.getPrototypeOf(Uint8Array);
const inspectCustom = Symbol.for("nodejs.util.inspect.custom");

function quoteString(s) {
  let quote = "'";
  if (s.includes("'")) quote = !s.includes('"') ? '"' : !s.includes("`") && !s.includes("${") ? "`" : "'";
  const escaped = s.replace(/[\\\x00-\x1f\x7f]/g, (c) => {
    switch (c) {
      case "\\": return "\\\\";
      case "\n": return "\\n";
      case "\t": return "\\t";
      case "\r": return "\\r";
      case "\b": return "\\b";
      case "\f": return "\\f";
      case "\v": return "\\v";
      default: return "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0");
    }
  });
  return quote + (quote === "'" ? escaped.replace(/'/g, "\\'") : escaped) + quote;
}

function formatNumber(n) {
  return Object.is(n, -0) ? "-0" : String(n);
}

function formatPrimitive(v) {
  switch (typeof v) {
    case "string": return quoteString(v.length > MAX_STRING_LENGTH ? v.slice(0, MAX_STRING_LENGTH) : v) +
      (v.length > MAX_STRING_LENGTH ? `... ${v.length - MAX_STRING_LENGTH} more characters` : "");
    case "number": return formatNumber(v);
    case "bigint": return `${v}n`;
    case "boolean": return String(v);
    case "undefined": return "undefined";
    case "symbol": return v.toString();
  }
  return "null";
}

function formatKey(key) {
  if (typeof key === "symbol") return `[${key.toString()}]`;
  return IDENTIFIER.test(key) ? key : quoteString(key);
}

function constructorName(v) {
  let proto = Object.getPrototypeOf(v);
  if (proto === null) return null;
  while (proto !== null) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, "constructor");
    if (descriptor && typeof descriptor.value === "function" && descriptor.value.name !== "") return descriptor.value.name;
    proto = Object.getPrototypeOf(proto);
  }
  return "";
}

function formatFunction(fn) {
  const source = Function.prototype.toString.call(fn);
  const name = fn.name ? `: ${fn.name}` : " (anonymous)";
  if (source.startsWith("class") && /^class\b/.test(source)) return `[class ${fn.name || "(anonymous)"}]`;
  const kind = fn.constructor && fn.constructor.name === "AsyncFunction" ? "AsyncFunction"
    : fn.constructor && fn.constructor.name === "GeneratorFunction" ? "GeneratorFunction" : "Function";
  return `[${kind}${name}]`;
}

function formatError(e, ctx) {
  const head = `${e.name || "Error"}: ${e.message}`;
  const stack = typeof e.stack === "string" ? e.stack : "";
  const text = stack.startsWith(head) || stack.startsWith(e.name) ? stack.trimEnd() : (stack ? `${head}\n${stack.trimEnd()}` : `[${head}]`);
  return ctx.indentationLvl ? text.split("\n").join("\n" + " ".repeat(ctx.indentationLvl)) : text;
}

function groupArrayElements(ctx, output, value) {
  let totalLength = 0;
  let maxLength = 0;
  let outputLength = output.length;
  if (value && value.length > MAX_ARRAY_LENGTH && outputLength > MAX_ARRAY_LENGTH) outputLength--;
  const separatorSpace = 2;
  const dataLen = new Array(outputLength);
  for (let i = 0; i < outputLength; i++) {
    const len = output[i].length;
    dataLen[i] = len;
    totalLength += len + separatorSpace;
    if (maxLength < len) maxLength = len;
  }
  const actualMax = maxLength + separatorSpace;
  if (actualMax * 3 + ctx.indentationLvl < BREAK_LENGTH && (totalLength / actualMax > 5 || maxLength <= 6)) {
    const averageBias = Math.sqrt(actualMax - totalLength / output.length);
    const biasedMax = Math.max(actualMax - 3 - averageBias, 1);
    const columns = Math.min(
      Math.round(Math.sqrt(2.5 * biasedMax * outputLength) / biasedMax),
      Math.floor((BREAK_LENGTH - ctx.indentationLvl) / actualMax),
      12,
      15,
    );
    if (columns <= 1) return output;
    const tmp = [];
    const maxLineLength = [];
    for (let i = 0; i < columns; i++) {
      let lineLength = 0;
      for (let j = i; j < outputLength; j += columns) if (dataLen[j] > lineLength) lineLength = dataLen[j];
      maxLineLength.push(lineLength + separatorSpace);
    }
    let padStart = true;
    if (value !== undefined) {
      for (let i = 0; i < outputLength; i++) {
        if (typeof value[i] !== "number" && typeof value[i] !== "bigint") { padStart = false; break; }
      }
    }
    for (let i = 0; i < outputLength; i += columns) {
      const max = Math.min(i + columns, outputLength);
      let str = "";
      let j = i;
      for (; j < max - 1; j++) {
        const cell = `${output[j]}, `;
        str += padStart ? cell.padStart(maxLineLength[j - i], " ") : cell.padEnd(maxLineLength[j - i], " ");
      }
      str += padStart ? output[j].padStart(maxLineLength[j - i] - separatorSpace, " ") : output[j];
      tmp.push(str);
    }
    if (outputLength < output.length) tmp.push(output[outputLength]);
    return tmp;
  }
  return output;
}

function isBelowBreakLength(output, start, base) {
  let totalLength = output.length + start;
  if (totalLength + output.length > BREAK_LENGTH) return false;
  for (const entry of output) {
    totalLength += entry.length;
    if (totalLength > BREAK_LENGTH) return false;
  }
  return base === "" || !base.includes("\n");
}

function reduceToSingleString(ctx, output, base, braces, isArray, recurseTimes, value) {
  const entries = output.length;
  if (isArray && entries > 6) output = groupArrayElements(ctx, output, value);
  if (ctx.currentDepth - recurseTimes < 3 && entries === output.length) {
    const start = output.length + ctx.indentationLvl + braces[0].length + base.length + 10;
    if (isBelowBreakLength(output, start, base)) {
      const joined = output.join(", ");
      if (!joined.includes("\n")) return `${base ? `${base} ` : ""}${braces[0]} ${joined} ${braces[1]}`;
    }
  }
  const indentation = `\n${" ".repeat(ctx.indentationLvl)}`;
  return `${base ? `${base} ` : ""}${braces[0]}${indentation}  ${output.join(`,${indentation}  `)}${indentation}${braces[1]}`;
}

function formatProperty(ctx, value, recurseTimes, key, isArrayIndex) {
  const descriptor = Object.getOwnPropertyDescriptor(value, key) || { value: value[key], enumerable: true };
  let text;
  if (descriptor.value !== undefined || !("get" in descriptor || "set" in descriptor)) {
    ctx.indentationLvl += 2;
    text = formatValue(ctx, descriptor.value, recurseTimes);
    ctx.indentationLvl -= 2;
  } else if (descriptor.get !== undefined) {
    text = descriptor.set !== undefined ? "[Getter/Setter]" : "[Getter]";
  } else {
    text = descriptor.set !== undefined ? "[Setter]" : "undefined";
  }
  if (isArrayIndex) return text;
  return `${formatKey(key)}: ${text}`;
}

function ownKeys(value, skipIndices) {
  const keys = Object.keys(value);
  const symbols = Object.getOwnPropertySymbols(value).filter((s) => Object.prototype.propertyIsEnumerable.call(value, s));
  const filtered = skipIndices ? keys.filter((k) => !/^(0|[1-9]\d*)$/.test(k)) : keys;
  return filtered.concat(symbols);
}

function formatValue(ctx, value, recurseTimes, typedArray) {
  if (value === null || (typeof value !== "object" && typeof value !== "function")) return formatPrimitive(value);
  if (ctx.customInspect !== false && typeof value[inspectCustom] === "function" && value[inspectCustom] !== inspect) {
    const result = value[inspectCustom](ctx.depth - recurseTimes, { ...ctx.options }, inspect);
    if (result !== value) return typeof result === "string" ? result : formatValue(ctx, result, recurseTimes);
  }
  if (ctx.seen.includes(value)) {
    let index = ctx.circular.get(value);
    if (index === undefined) { index = ctx.circular.size + 1; ctx.circular.set(value, index); }
    return `[Circular *${index}]`;
  }
  const text = formatRaw(ctx, value, recurseTimes, typedArray);
  const index = ctx.circular.get(value);
  return index !== undefined ? `<ref *${index}> ${text}` : text;
}

function prefix(name, tag, fallback, size) {
  if (name === null) return `[${fallback}${size}: null prototype] `;
  return name !== fallback || size ? `${name}${size} ` : "";
}

function formatRaw(ctx, value, recurseTimes) {
  const name = constructorName(value);
  let braces;
  let base = "";
  let isArray = false;
  let entries = [];
  let keys;
  const depthExceeded = recurseTimes > ctx.depth;
  if (typeof value === "function") {
    base = formatFunction(value);
    keys = ownKeys(value, false);
    if (keys.length === 0) return base;
    braces = ["{", "}"];
  } else if (Array.isArray(value)) {
    if (depthExceeded) return "[Array]";
    isArray = true;
    const size = name !== "Array" ? `(${value.length})` : "";
    braces = [`${name === "Array" ? "" : prefix(name, "", "Array", size)}[`, "]"];
    if (value.length === 0 && ownKeys(value, true).length === 0) return `${braces[0]}]`;
    keys = ownKeys(value, true);
    ctx.seen.push(value);
    ctx.currentDepth = recurseTimes;
    const shown = Math.min(value.length, MAX_ARRAY_LENGTH);
    let holes = 0;
    for (let i = 0; i < shown; i++) {
      if (!Object.prototype.hasOwnProperty.call(value, i)) { holes++; continue; }
      if (holes) { entries.push(`<${holes} empty item${holes > 1 ? "s" : ""}>`); holes = 0; }
      entries.push(formatProperty(ctx, value, recurseTimes + 1, i, true));
    }
    if (holes) entries.push(`<${holes} empty item${holes > 1 ? "s" : ""}>`);
    if (value.length > shown) entries.push(`... ${value.length - shown} more item${value.length - shown > 1 ? "s" : ""}`);
    ctx.seen.pop();
  } else if (value instanceof TYPED_ARRAY) {
    if (typeof Buffer === "function" && value instanceof Buffer) {
      const bytes = Array.from(value.subarray(0, 50), (b) => b.toString(16).padStart(2, "0")).join(" ");
      return `<Buffer${bytes ? " " + bytes : ""}${value.length > 50 ? ` ... ${value.length - 50} more bytes` : ""}>`;
    }
    if (depthExceeded) return `[${name}]`;
    isArray = true;
    braces = [`${name}(${value.length}) [`, "]"];
    if (value.length === 0) return `${braces[0]}]`;
    const shown = Math.min(value.length, MAX_ARRAY_LENGTH);
    for (let i = 0; i < shown; i++) entries.push(typeof value[i] === "bigint" ? `${value[i]}n` : formatNumber(value[i]));
    if (value.length > shown) entries.push(`... ${value.length - shown} more item${value.length - shown > 1 ? "s" : ""}`);
    keys = [];
  } else if (value instanceof Map) {
    if (depthExceeded) return `[${name || "Map"}]`;
    braces = [`${prefix(name, "", "Map", `(${value.size})`)}{`, "}"];
    if (value.size === 0 && ownKeys(value, false).length === 0) return `${braces[0]}}`;
    ctx.seen.push(value);
    ctx.currentDepth = recurseTimes;
    ctx.indentationLvl += 2;
    for (const [k, v] of value) entries.push(`${formatValue(ctx, k, recurseTimes + 1)} => ${formatValue(ctx, v, recurseTimes + 1)}`);
    ctx.indentationLvl -= 2;
    ctx.seen.pop();
    keys = ownKeys(value, false);
  } else if (value instanceof Set) {
    if (depthExceeded) return `[${name || "Set"}]`;
    braces = [`${prefix(name, "", "Set", `(${value.size})`)}{`, "}"];
    if (value.size === 0 && ownKeys(value, false).length === 0) return `${braces[0]}}`;
    ctx.seen.push(value);
    ctx.currentDepth = recurseTimes;
    ctx.indentationLvl += 2;
    for (const v of value) entries.push(formatValue(ctx, v, recurseTimes + 1));
    ctx.indentationLvl -= 2;
    ctx.seen.pop();
    keys = ownKeys(value, false);
  } else if (value instanceof Error) {
    base = formatError(value, ctx);
    keys = ownKeys(value, false).filter((k) => k !== "stack" && k !== "message");
    if (keys.length === 0) return base;
    braces = ["{", "}"];
  } else if (value instanceof Date) {
    base = Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
    keys = ownKeys(value, false);
    if (keys.length === 0) return base;
    braces = ["{", "}"];
  } else if (value instanceof RegExp) {
    base = RegExp.prototype.toString.call(value);
    keys = ownKeys(value, false).filter((k) => k !== "lastIndex");
    if (keys.length === 0) return base;
    braces = ["{", "}"];
  } else if (value instanceof Promise) {
    braces = ["Promise {", "}"];
    entries.push("<unknown>");
    keys = ownKeys(value, false);
  } else if (value instanceof WeakMap || value instanceof WeakSet) {
    return `${name} { <items unknown> }`;
  } else if (value instanceof ArrayBuffer) {
    const bytes = new Uint8Array(value);
    const hex = Array.from(bytes.subarray(0, 50), (b) => b.toString(16).padStart(2, "0")).join(" ");
    return `ArrayBuffer { [Uint8Contents]: <${hex}${bytes.length > 50 ? ` ... ${bytes.length - 50} more bytes` : ""}>, byteLength: ${bytes.length} }`;
  } else if (value instanceof Number || value instanceof String || value instanceof Boolean) {
    const type = value instanceof Number ? "Number" : value instanceof String ? "String" : "Boolean";
    return `[${type}: ${formatPrimitive(value.valueOf())}]`;
  } else {
    const tag = value[Symbol.toStringTag];
    if (depthExceeded) return `[${name === null ? "Object: null prototype" : name || tag || "Object"}]`;
    let label = name === null ? "[Object: null prototype]" : name === "Object" ? "" : name;
    if (typeof tag === "string" && tag !== "" && tag !== name) label = `${label || "Object"} [${tag}]`;
    braces = [`${label ? label + " " : ""}{`, "}"];
    keys = ownKeys(value, false);
    if (keys.length === 0) return `${braces[0]}}`;
  }
  if (depthExceeded) return `[${name || "Object"}]`;
  ctx.seen.push(value);
  ctx.currentDepth = recurseTimes;
  for (const key of keys) entries.push(formatProperty(ctx, value, recurseTimes + 1, key, false));
  ctx.seen.pop();
  return reduceToSingleString(ctx, entries, base, braces, isArray, recurseTimes, value);
}

function inspect(value, options) {
  if (typeof options !== "object" || options === null) options = {};
  const ctx = {
    depth: options.depth === undefined ? 2 : options.depth === null ? Infinity : options.depth,
    seen: [],
    circular: new Map(),
    indentationLvl: 0,
    currentDepth: 0,
    customInspect: options.customInspect,
    options,
  };
  return formatValue(ctx, value, 0);
}
inspect.custom = inspectCustom;

function format(...args) {
  return formatWithOptions({}, ...args);
}

function formatWithOptions(options, first, ...args) {
  const show = (v) => (typeof v === "string" ? v : inspect(v, options));
  if (typeof first !== "string") return [first, ...args].map(show).join(" ");
  if (args.length === 0) return first;
  let text = "";
  let used = 0;
  let last = 0;
  for (let i = 0; i < first.length - 1; i++) {
    if (first.charCodeAt(i) !== 37) continue; // '%'
    const code = first[i + 1];
    if (code === "%") { text += first.slice(last, i) + "%"; last = i + 2; i++; continue; }
    if (used >= args.length || !"sdifjoOc".includes(code)) continue;
    const arg = args[used];
    let piece;
    switch (code) {
      case "s":
        piece = typeof arg === "string" ? arg : typeof arg === "bigint" ? `${arg}n`
          : typeof arg === "object" && arg !== null ? inspect(arg, { depth: 0 }) : String(arg);
        break;
      case "d": case "i":
        piece = typeof arg === "bigint" ? `${arg}n` : typeof arg === "symbol" ? "NaN"
          : formatNumber(code === "i" ? parseInt(arg) : Number(arg));
        break;
      case "f": piece = typeof arg === "symbol" ? "NaN" : formatNumber(parseFloat(arg)); break;
      case "j": try { piece = JSON.stringify(arg); } catch { piece = "[Circular]"; } break;
      case "o": piece = inspect(arg, { depth: 4 }); break;
      case "O": piece = inspect(arg, options); break;
      case "c": piece = ""; break;
    }
    text += first.slice(last, i) + piece;
    last = i + 2;
    used++;
    i++;
  }
  text += first.slice(last);
  for (let i = used; i < args.length; i++) text += " " + show(args[i]);
  return text;
}
