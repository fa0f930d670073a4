// A small `Intl`: QuickJS has none, and programs format numbers and dates with it all the
// time. `Intl.NumberFormat` (decimal, percent, currency; digits options; grouping) and
// `Intl.DateTimeFormat` (numeric, 2-digit, short and long fields; UTC, the guest's only time
// zone), used by `toLocaleString` and friends. Locales: English conventions, except that
// German-style locales (de, es, it, nl, pt, id, tr, da) swap the separators and French-style
// ones (fr, ru, pl, cs, sv, fi, nb, uk) group with a narrow no-break space. Anything else
// (compact notation, units, other calendars) is formatted as en-US.
const CURRENCY_SYMBOLS = { USD: "$", EUR: "€", GBP: "£", JPY: "¥", CNY: "CN¥", INR: "₹", CAD: "CA$", AUD: "A$", KRW: "₩", BRL: "R$", CHF: "CHF", MXN: "MX$" };
const ZERO_DECIMAL_CURRENCIES = ["JPY", "KRW"];

function separatorsFor(locale) {
  const language = String(Array.isArray(locale) ? locale[0] || "en" : locale || "en").toLowerCase().split("-")[0];
  if (["de", "es", "it", "nl", "pt", "id", "tr", "da"].includes(language)) return { group: ".", decimal: "," };
  if (["fr", "ru", "pl", "cs", "sv", "fi", "nb", "uk"].includes(language)) return { group: "\u202f", decimal: "," };
  return { group: ",", decimal: "." };
}

class NumberFormat {
  #options;
  constructor(locale, options = {}) {
    const style = options.style || "decimal";
    if (style === "currency" && !options.currency) throw new TypeError("Currency code is required with currency style.");
    const currency = options.currency ? String(options.currency).toUpperCase() : undefined;
    const defaultMax = style === "currency" ? (ZERO_DECIMAL_CURRENCIES.includes(currency) ? 0 : 2) : style === "percent" ? 0 : 3;
    const defaultMin = style === "currency" ? defaultMax : 0;
    let min = options.minimumFractionDigits ?? defaultMin;
    let max = options.maximumFractionDigits ?? Math.max(min, defaultMax);
    if (max < min) { if (options.maximumFractionDigits !== undefined) throw new RangeError("maximumFractionDigits value is out of range."); max = min; }
    this.#options = { locale: locale || "en-US", style, currency, min, max, grouping: options.useGrouping !== false,
      minInt: options.minimumIntegerDigits || 1, sign: options.signDisplay || "auto", display: options.currencyDisplay || "symbol",
      significant: options.maximumSignificantDigits };
  }
  format(value) {
    const o = this.#options;
    let n = typeof value === "bigint" ? Number(value) : Number(value);
    if (Number.isNaN(n)) return "NaN";
    if (o.style === "percent") n *= 100;
    const negative = n < 0 || Object.is(n, -0);
    let digits;
    if (!Number.isFinite(n)) digits = "∞";
    else {
      const abs = Math.abs(n);
      let text = o.significant ? Number(abs.toPrecision(o.significant)).toFixed(Math.max(0, o.significant - 1 - Math.floor(Math.log10(abs || 1)))) : abs.toFixed(o.max);
      let [int, frac = ""] = text.split(".");
      frac = frac.replace(/0+$/, "");
      if (o.significant) frac = frac.slice(0, 20);
      while (frac.length < o.min) frac += "0";
      int = int.padStart(o.minInt, "0");
      const { group, decimal } = separatorsFor(o.locale);
      if (o.grouping) int = int.replace(/\B(?=(\d{3})+(?!\d))/g, group);
      digits = frac ? `${int}${decimal}${frac}` : int;
    }
    const showMinus = negative ? "-" : o.sign === "always" || (o.sign === "exceptZero" && n !== 0) ? "+" : "";
    if (o.style === "percent") return `${showMinus}${digits}%`;
    if (o.style === "currency") {
      const symbol = o.display === "code" ? `${o.currency}\u00a0` : o.display === "name" ? "" : CURRENCY_SYMBOLS[o.currency] || `${o.currency}\u00a0`;
      if (o.display === "name") return `${showMinus}${digits} ${o.currency}`;
      return separatorsFor(o.locale).decimal === "," ? `${showMinus}${digits}\u00a0${symbol.trim()}` : `${showMinus}${symbol}${digits}`;
    }
    return `${showMinus}${digits}`;
  }
  formatToParts(value) { return [{ type: "literal", value: this.format(value) }]; }
  resolvedOptions() {
    const o = this.#options;
    return { locale: String(o.locale), numberingSystem: "latn", style: o.style, currency: o.currency, minimumIntegerDigits: o.minInt,
      minimumFractionDigits: o.min, maximumFractionDigits: o.max, useGrouping: o.grouping ? "auto" : false, signDisplay: o.sign };
  }
  static supportedLocalesOf(locales) { return [].concat(locales || []); }
}

const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

class DateTimeFormat {
  #options;
  constructor(locale, options = {}) {
    const fields = ["weekday", "year", "month", "day", "hour", "minute", "second"];
    const any = fields.some((f) => options[f] !== undefined) || options.dateStyle || options.timeStyle;
    const o = { ...options };
    if (options.timeZone && !/^(utc|gmt|etc\/utc)$/i.test(options.timeZone)) {
      throw new RangeError(`Time zone ${options.timeZone} is not available: SoulBox's WebAssembly JavaScript has only UTC`);
    }
    if (!any) { o.year = "numeric"; o.month = "numeric"; o.day = "numeric"; }
    if (options.dateStyle === "full") Object.assign(o, { weekday: "long", year: "numeric", month: "long", day: "numeric" });
    if (options.dateStyle === "long") Object.assign(o, { year: "numeric", month: "long", day: "numeric" });
    if (options.dateStyle === "medium") Object.assign(o, { year: "numeric", month: "short", day: "numeric" });
    if (options.dateStyle === "short") Object.assign(o, { year: "2-digit", month: "numeric", day: "numeric" });
    if (options.timeStyle) Object.assign(o, { hour: "numeric", minute: "2-digit", ...(options.timeStyle === "short" ? {} : { second: "2-digit" }) });
    this.#options = o;
  }
  format(date = new Date()) {
    const d = date instanceof Date ? date : new Date(date);
    if (Number.isNaN(d.getTime())) throw new RangeError("Invalid time value");
    const o = this.#options;
    const two = (n) => String(n).padStart(2, "0");
    const month = d.getUTCMonth();
    let datePart = "";
    if (o.month === "long" || o.month === "short") {
      const name = o.month === "long" ? MONTHS[month] : MONTHS[month].slice(0, 3);
      datePart = [name, o.day ? (o.day === "2-digit" ? two(d.getUTCDate()) : d.getUTCDate()) : ""].filter(String).join(" ");
      if (o.year) datePart += `${o.day ? "," : ""} ${o.year === "2-digit" ? two(d.getUTCFullYear() % 100) : d.getUTCFullYear()}`;
    } else if (o.month || o.day || o.year) {
      const parts = [];
      if (o.month) parts.push(o.month === "2-digit" ? two(month + 1) : month + 1);
      if (o.day) parts.push(o.day === "2-digit" ? two(d.getUTCDate()) : d.getUTCDate());
      if (o.year) parts.push(o.year === "2-digit" ? two(d.getUTCFullYear() % 100) : d.getUTCFullYear());
      datePart = parts.join("/");
    }
    if (o.weekday) {
      const name = o.weekday === "long" ? WEEKDAYS[d.getUTCDay()] : WEEKDAYS[d.getUTCDay()].slice(0, 3);
      datePart = datePart ? `${name}, ${datePart}` : name;
    }
    let timePart = "";
    if (o.hour || o.minute || o.second) {
      const hour12 = o.hour12 !== false && o.hourCycle !== "h23";
      const h = d.getUTCHours();
      const shown = hour12 ? h % 12 || 12 : h;
      const parts = [];
      if (o.hour) parts.push(o.hour === "2-digit" || !hour12 ? two(shown) : shown);
      if (o.minute) parts.push(two(d.getUTCMinutes()));
      if (o.second) parts.push(two(d.getUTCSeconds()));
      timePart = parts.join(":") + (hour12 && o.hour ? ` ${h < 12 ? "AM" : "PM"}` : "");
    }
    const joiner = (o.dateStyle === "full" || o.dateStyle === "long") && o.timeStyle ? " at " : ", ";
    return [datePart, timePart].filter(Boolean).join(joiner);
  }
  formatToParts(date) { return [{ type: "literal", value: this.format(date) }]; }
  resolvedOptions() { return { locale: "en-US", calendar: "gregory", numberingSystem: "latn", timeZone: "UTC", ...this.#options }; }
  static supportedLocalesOf(locales) { return [].concat(locales || []); }
}

const Intl = {
  NumberFormat,
  DateTimeFormat,
  Collator: class Collator {
    #numeric;
    constructor(_locale, options = {}) { this.#numeric = Boolean(options.numeric); }
    compare = (a, b) => collate(String(a), String(b), this.#numeric);
  },
  PluralRules: class PluralRules {
    constructor(_locale, options = {}) { this.type = options.type || "cardinal"; }
    select(n) {
      if (this.type === "ordinal") { const t = n % 10, h = n % 100; return t === 1 && h !== 11 ? "one" : t === 2 && h !== 12 ? "two" : t === 3 && h !== 13 ? "few" : "other"; }
      return n === 1 ? "one" : "other";
    }
  },
  getCanonicalLocales: (locales) => [].concat(locales || []),
};

// Root collation, roughly as ICU orders: letters compared without accents and case first,
// then accents, then lower case before upper; with `numeric`, digit runs compare as numbers.
function collate(a, b, numeric) {
  const base = (s) => s.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  const compareRuns = (x, y) => {
    if (!numeric) return x < y ? -1 : x > y ? 1 : 0;
    const xs = x.match(/\d+|\D+/g) || [], ys = y.match(/\d+|\D+/g) || [];
    for (let i = 0; i < Math.min(xs.length, ys.length); i++) {
      const [p, q] = [xs[i], ys[i]];
      const order = /^\d/.test(p) && /^\d/.test(q) ? Math.sign(Number(p) - Number(q)) : p < q ? -1 : p > q ? 1 : 0;
      if (order) return order;
    }
    return Math.sign(xs.length - ys.length);
  };
  const primary = compareRuns(base(a), base(b));
  if (primary) return primary;
  const accents = compareRuns(a.normalize("NFD").toLowerCase(), b.normalize("NFD").toLowerCase());
  if (accents) return accents;
  const swapCase = (s) => s.replace(/[a-zA-Z]/g, (c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()));
  return compareRuns(swapCase(a), swapCase(b));
}

function installIntl() {
  const method = (target, name, fn) => Object.defineProperty(target, name, { value: fn, writable: true, configurable: true, enumerable: false });
  method(String.prototype, "localeCompare", function localeCompare(that, _locale, options = {}) {
    return collate(String(this), String(that), Boolean(options && options.numeric));
  });
  method(Number.prototype, "toLocaleString", function toLocaleString(locale, options) { return new NumberFormat(locale, options).format(this); });
  method(BigInt.prototype, "toLocaleString", function toLocaleString(locale, options) { return new NumberFormat(locale, options).format(this); });
  method(Date.prototype, "toLocaleDateString", function toLocaleDateString(locale, options = {}) {
    return new DateTimeFormat(locale, options.year || options.month || options.day || options.weekday || options.dateStyle ? options : { ...options, year: "numeric", month: "numeric", day: "numeric" }).format(this);
  });
  method(Date.prototype, "toLocaleTimeString", function toLocaleTimeString(locale, options = {}) {
    return new DateTimeFormat(locale, options.hour || options.minute || options.second || options.timeStyle ? options : { ...options, hour: "numeric", minute: "2-digit", second: "2-digit" }).format(this);
  });
  method(Date.prototype, "toLocaleString", function toLocaleString(locale, options = {}) {
    const fields = ["weekday", "year", "month", "day", "hour", "minute", "second", "dateStyle", "timeStyle"];
    return new DateTimeFormat(locale, fields.some((f) => options[f]) ? options : { ...options, year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "2-digit", second: "2-digit" }).format(this);
  });
  Object.defineProperty(globalThis, "Intl", { value: Intl, writable: true, configurable: true, enumerable: false });
}
