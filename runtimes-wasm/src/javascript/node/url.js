// URL and URLSearchParams, after the WHATWG URL standard for the URLs programs build: special
// schemes (http, https, ws, wss, ftp, file) with authority, default ports dropped, dot
// segments resolved, relative references against a base, percent-encoding of paths, queries
// and fragments; other schemes keep an opaque path. Hosts are lowercased, not IDNA-mapped.
const SPECIAL_PORTS = { "http:": "80", "https:": "443", "ws:": "80", "wss:": "443", "ftp:": "21", "file:": "" };
const URL_PATTERN = /^([A-Za-z][A-Za-z0-9+.-]*:)?(\/\/([^/?#]*))?([^?#]*)(\?[^#]*)?(#.*)?$/;

function encodeSet(text, keep) {
  let out = "";
  for (const ch of text) {
    if (keep.test(ch)) out += ch;
    else for (const byte of utf8Encode(ch)) out += "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}
const encodePath = (s) => encodeSet(s, /[A-Za-z0-9\-._~!$&'()*+,;=:@\/%\[\]|^]/);
const encodeQuery = (s) => encodeSet(s, /[A-Za-z0-9\-._~!$&'()*+,;=:@\/?%\[\]|^`{}\\]/);
const encodeFragment = (s) => encodeSet(s, /[A-Za-z0-9\-._~!$&'()*+,;=:@\/?%\[\]|^#{}\\]/);
const encodeUserinfo = (s) => encodeSet(s, /[A-Za-z0-9\-._~!$&'()*+,%]/);

function removeDotSegments(path) {
  const out = [];
  const segments = path.split("/");
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    const last = i === segments.length - 1;
    if (segment === "." || segment.toLowerCase() === "%2e") { if (last) out.push(""); continue; }
    if (segment === ".." || /^(\.|%2e)(\.|%2e)$/i.test(segment)) {
      if (out.length > 1) out.pop();
      if (last) out.push("");
      continue;
    }
    out.push(segment);
  }
  const joined = out.join("/");
  return joined.startsWith("/") ? joined : "/" + joined;
}

function invalidUrl(input) {
  const error = new TypeError("Invalid URL");
  error.code = "ERR_INVALID_URL";
  error.input = input;
  return error;
}

function parseUrl(input, base) {
  const text = String(input).replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, "").replace(/[\t\n\r]/g, "");
  const special = (scheme) => Object.prototype.hasOwnProperty.call(SPECIAL_PORTS, scheme);
  let match = URL_PATTERN.exec(special((/^[A-Za-z][A-Za-z0-9+.-]*:/.exec(text) || [""])[0].toLowerCase()) ? text.replace(/\\/g, "/") : text);
  if (!match) throw invalidUrl(input);
  let [, scheme, , authority, path, query, fragment] = match;
  const record = {};
  if (scheme) {
    record.protocol = scheme.toLowerCase();
    if (special(record.protocol) && authority === undefined) {
      // "http:example.com" or "http:/example.com": the authority follows the slashes.
      if (base && base.protocol === record.protocol && !path.startsWith("/")) return parseUrl(text.slice(scheme.length), base);
      const rest = path.replace(/^\/*/, "");
      const slash = rest.search(/[/?#]/);
      authority = slash < 0 ? rest : rest.slice(0, slash);
      path = slash < 0 ? "" : rest.slice(slash);
    }
  } else {
    if (!base) throw invalidUrl(input);
    record.protocol = base.protocol;
    if (authority === undefined) {
      if (!base.special && base.opaque) {
        if (path !== "" || query !== undefined) throw invalidUrl(input);
        return { ...base, hash: fragment ? encodeFragment(fragment) : "" };
      }
      if (base.hostname !== undefined) {
        Object.assign(record, { username: base.username, password: base.password, hostname: base.hostname, port: base.port });
      }
      if (path === "") {
        path = base.pathname;
        if (query === undefined) query = base.search;
      } else if (!path.startsWith("/")) {
        path = base.pathname.replace(/[^/]*$/, "") + path;
      }
    }
  }
  record.special = special(record.protocol);
  if (authority !== undefined) {
    const at = authority.lastIndexOf("@");
    const userinfo = at >= 0 ? authority.slice(0, at) : "";
    const hostport = at >= 0 ? authority.slice(at + 1) : authority;
    const colon = userinfo.indexOf(":");
    record.username = encodeUserinfo(colon >= 0 ? userinfo.slice(0, colon) : userinfo);
    record.password = encodeUserinfo(colon >= 0 ? userinfo.slice(colon + 1) : "");
    const portMatch = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(hostport);
    if (!portMatch) throw invalidUrl(input);
    let hostname = portMatch[1];
    if (record.special) {
      try { hostname = decodeURIComponent(hostname); } catch { throw invalidUrl(input); }
      hostname = hostname.toLowerCase();
      if (/[\x00-\x20#%/:<>?@[\\\]^|]/.test(hostname.replace(/^\[(.*)\]$/, "$1").replace(/:/g, ""))) throw invalidUrl(input);
      if (hostname === "" && record.protocol !== "file:") throw invalidUrl(input);
      if (/^[\d.]+$/.test(hostname) || /^0x/i.test(hostname)) {
        const parts = hostname.split(".");
        if (parts.length > 4 || parts.some((p) => p === "" || Number(p) > 255) && parts.length === 4) throw invalidUrl(input);
      }
    }
    record.hostname = hostname;
    let port = portMatch[2] || "";
    if (port !== "") {
      if (Number(port) > 65535) throw invalidUrl(input);
      port = String(Number(port));
    }
    record.port = port === SPECIAL_PORTS[record.protocol] ? "" : port;
  }
  if (record.special || record.hostname !== undefined) {
    record.opaque = false;
    record.pathname = path === "" && record.special ? "/" : path === "" ? "" : removeDotSegments(encodePath(path));
  } else {
    record.opaque = !path.startsWith("/");
    record.pathname = record.opaque ? encodeSet(path, /[\x20-\x7e]/) : removeDotSegments(encodePath(path));
  }
  record.search = query === undefined || query === "?" ? "" : encodeQuery(query);
  record.hash = fragment === undefined || fragment === "#" ? "" : encodeFragment(fragment);
  return record;
}

class URLSearchParams {
  #list = [];
  #url = null;
  constructor(init = "") {
    if (typeof init === "object" && init !== null) {
      if (typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          const entry = [...pair];
          if (entry.length !== 2) throw new TypeError("Each query pair must be an iterable [name, value] tuple");
          this.#list.push([String(entry[0]), String(entry[1])]);
        }
      } else {
        for (const key of Object.keys(init)) this.#list.push([key, String(init[key])]);
      }
    } else {
      this.#parse(String(init));
    }
  }
  static _attach(params, url) { params.#url = url; }
  static _reset(params, query) { params.#list = []; params.#parse(query); }
  #parse(query) {
    if (query.startsWith("?")) query = query.slice(1);
    for (const part of query.split("&")) {
      if (part === "") continue;
      const eq = part.indexOf("=");
      const decode = (s) => { try { return decodeURIComponent(s.replace(/\+/g, " ")); } catch { return s; } };
      this.#list.push(eq >= 0 ? [decode(part.slice(0, eq)), decode(part.slice(eq + 1))] : [decode(part), ""]);
    }
  }
  #update() { if (this.#url) this.#url._setSearch(this.toString()); }
  get size() { return this.#list.length; }
  append(name, value) { this.#list.push([String(name), String(value)]); this.#update(); }
  delete(name, value) {
    this.#list = this.#list.filter(([k, v]) => !(k === String(name) && (value === undefined || v === String(value))));
    this.#update();
  }
  get(name) { const entry = this.#list.find(([k]) => k === String(name)); return entry ? entry[1] : null; }
  getAll(name) { return this.#list.filter(([k]) => k === String(name)).map(([, v]) => v); }
  has(name, value) { return this.#list.some(([k, v]) => k === String(name) && (value === undefined || v === String(value))); }
  set(name, value) {
    name = String(name);
    const index = this.#list.findIndex(([k]) => k === name);
    if (index < 0) this.#list.push([name, String(value)]);
    else {
      this.#list[index][1] = String(value);
      this.#list = this.#list.filter(([k], i) => k !== name || i === index);
    }
    this.#update();
  }
  sort() { this.#list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)); this.#update(); }
  forEach(callback, thisArg) { for (const [k, v] of this.#list) callback.call(thisArg, v, k, this); }
  keys() { return this.#list.map(([k]) => k)[Symbol.iterator](); }
  values() { return this.#list.map(([, v]) => v)[Symbol.iterator](); }
  entries() { return this.#list.map(([k, v]) => [k, v])[Symbol.iterator](); }
  [Symbol.iterator]() { return this.entries(); }
  toString() {
    const encode = (s) => encodeURIComponent(s).replace(/%20/g, "+").replace(/[!'()~]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
    return this.#list.map(([k, v]) => `${encode(k)}=${encode(v)}`).join("&");
  }
  [inspectCustom]() { return `URLSearchParams {${this.#list.length ? " " + this.#list.map(([k, v]) => `${quoteString(k)} => ${quoteString(v)}`).join(", ") + " " : ""}}`; }
}

class URL {
  #r;
  #params;
  constructor(input, base) {
    const baseRecord = base === undefined ? undefined : (base instanceof URL ? base.#r : new URL(base).#r);
    this.#r = parseUrl(input instanceof URL ? input.href : input, baseRecord);
    this.#params = new URLSearchParams(this.#r.search);
    URLSearchParams._attach(this.#params, this);
  }
  static canParse(input, base) { try { new URL(input, base); return true; } catch { return false; } }
  static parse(input, base) { try { return new URL(input, base); } catch { return null; } }
  _setSearch(query) { this.#r.search = query ? "?" + query : ""; }
  get #authority() {
    const r = this.#r;
    if (r.hostname === undefined) return undefined;
    const user = r.username || r.password ? `${r.username}${r.password ? ":" + r.password : ""}@` : "";
    return `${user}${r.hostname}${r.port ? ":" + r.port : ""}`;
  }
  get href() {
    const authority = this.#authority;
    return `${this.#r.protocol}${authority !== undefined ? "//" + authority : ""}${this.#r.pathname}${this.#r.search}${this.#r.hash}`;
  }
  set href(value) { this.#r = parseUrl(value); URLSearchParams._reset(this.#params, this.#r.search); }
  get origin() {
    const r = this.#r;
    if (r.special && r.protocol !== "file:") return `${r.protocol}//${this.host}`;
    if (r.protocol === "blob:") { try { return new URL(r.pathname).origin; } catch { return "null"; } }
    return "null";
  }
  get protocol() { return this.#r.protocol; }
  set protocol(value) {
    const scheme = String(value).replace(/:.*$/, "").toLowerCase() + ":";
    if (/^[a-z][a-z0-9+.-]*:$/.test(scheme) && Object.prototype.hasOwnProperty.call(SPECIAL_PORTS, scheme) === this.#r.special) {
      this.#r.protocol = scheme;
      if (this.#r.port === SPECIAL_PORTS[scheme]) this.#r.port = "";
    }
  }
  get username() { return this.#r.username || ""; }
  set username(value) { if (this.#r.hostname) this.#r.username = encodeUserinfo(String(value)); }
  get password() { return this.#r.password || ""; }
  set password(value) { if (this.#r.hostname) this.#r.password = encodeUserinfo(String(value)); }
  get host() { return this.#r.hostname === undefined ? "" : `${this.#r.hostname}${this.#r.port ? ":" + this.#r.port : ""}`; }
  set host(value) {
    const match = /^([^:/?#]*)(?::(\d*))?/.exec(String(value));
    if (match && match[1]) { this.hostname = match[1]; if (match[2] !== undefined) this.port = match[2]; }
  }
  get hostname() { return this.#r.hostname || ""; }
  set hostname(value) { if (this.#r.hostname !== undefined && String(value) !== "") this.#r.hostname = String(value).toLowerCase(); }
  get port() { return this.#r.port || ""; }
  set port(value) {
    if (this.#r.hostname === undefined) return;
    const digits = /^\d*/.exec(String(value))[0];
    if (digits === "") { if (String(value) === "") this.#r.port = ""; return; }
    if (Number(digits) > 65535) return;
    const port = String(Number(digits));
    this.#r.port = port === SPECIAL_PORTS[this.#r.protocol] ? "" : port;
  }
  get pathname() { return this.#r.pathname; }
  set pathname(value) {
    if (this.#r.opaque) return;
    let path = String(value);
    if (!path.startsWith("/") && (this.#r.special || this.#r.hostname !== undefined)) path = "/" + path;
    this.#r.pathname = removeDotSegments(encodePath(path));
  }
  get search() { return this.#r.search.length > 1 ? this.#r.search : ""; }
  set search(value) {
    const query = String(value).replace(/^\?/, "");
    this.#r.search = query ? "?" + encodeQuery(query) : "";
    URLSearchParams._reset(this.#params, query);
  }
  get searchParams() { return this.#params; }
  get hash() { return this.#r.hash.length > 1 ? this.#r.hash : ""; }
  set hash(value) { const f = String(value).replace(/^#/, ""); this.#r.hash = f ? "#" + encodeFragment(f) : ""; }
  toString() { return this.href; }
  toJSON() { return this.href; }
  [inspectCustom]() {
    const fields = ["href", "origin", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search"];
    const lines = fields.map((f) => `  ${f}: ${quoteString(this[f])},`);
    lines.push(`  searchParams: ${inspect(this.searchParams)},`, `  hash: ${quoteString(this.hash)}`);
    return `URL {\n${lines.join("\n")}\n}`;
  }
}
