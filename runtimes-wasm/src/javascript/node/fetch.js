// fetch, Headers, Request, Response, AbortController: the host makes each request, under the
// execution's network policy (runtimes-wasm/src/egress). `fetch` queues the request and returns
// a promise; the host's event loop takes the queue (`__soulbox_fetch_take`), makes the requests
// while timers run, and settles each promise with the answer (`__soulbox_fetch_settle`). An
// aborted request the host has taken is named in the next take, and the host drops it.
// Without a network policy, `fetch` rejects at once and nothing reaches the host.

const net = { enabled: false, next: 1, queued: [], aborted: [], pending: new Map() };

const utf8 = new TextEncoder();

class Headers {
  constructor(init) {
    this._list = [];
    if (init == null) return;
    if (init instanceof Headers) init._list.forEach(([k, v]) => this.append(k, v));
    else if (typeof init[Symbol.iterator] === "function") for (const [k, v] of init) this.append(k, v);
    else for (const k of Object.keys(init)) this.append(k, init[k]);
  }
  append(name, value) { this._list.push([String(name).toLowerCase(), String(value).trim()]); }
  set(name, value) { this.delete(name); this.append(name, value); }
  delete(name) { const n = String(name).toLowerCase(); this._list = this._list.filter(([k]) => k !== n); }
  has(name) { const n = String(name).toLowerCase(); return this._list.some(([k]) => k === n); }
  get(name) {
    const n = String(name).toLowerCase();
    const values = this._list.filter(([k]) => k === n).map(([, v]) => v);
    return values.length ? values.join(", ") : null;
  }
  getSetCookie() { return this._list.filter(([k]) => k === "set-cookie").map(([, v]) => v); }
  *entries() {
    const names = [...new Set(this._list.map(([k]) => k))].sort();
    for (const name of names) {
      if (name === "set-cookie") for (const v of this.getSetCookie()) yield [name, v];
      else yield [name, this.get(name)];
    }
  }
  *keys() { for (const [k] of this.entries()) yield k; }
  *values() { for (const [, v] of this.entries()) yield v; }
  forEach(callback, thisArg) { for (const [k, v] of this.entries()) callback.call(thisArg, v, k, this); }
  [Symbol.iterator]() { return this.entries(); }
  get [Symbol.toStringTag]() { return "Headers"; }
}

// A body as bytes, and the content type it implies.
function bodyBytes(body) {
  if (body == null) return [null, null];
  if (typeof body === "string") return [utf8.encode(body), "text/plain;charset=UTF-8"];
  if (body instanceof URLSearchParams) return [utf8.encode(body.toString()), "application/x-www-form-urlencoded;charset=UTF-8"];
  if (body instanceof ArrayBuffer) return [new Uint8Array(body.slice(0)), null];
  if (ArrayBuffer.isView(body)) return [new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)), null];
  return [utf8.encode(String(body)), "text/plain;charset=UTF-8"];
}

class Body {
  _initBody(bytes) { this._bytes = bytes; this._used = false; }
  get body() { return this._bytes; }
  get bodyUsed() { return this._used; }
  _consume() {
    if (this._used) return Promise.reject(new TypeError("Body is unusable: Body has already been read"));
    this._used = true;
    return Promise.resolve(this._bytes ?? new Uint8Array(0));
  }
  arrayBuffer() { return this._consume().then((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)); }
  bytes() { return this._consume().then((b) => new Uint8Array(b)); }
  text() { return this._consume().then((b) => new TextDecoder().decode(b)); }
  json() { return this.text().then((t) => JSON.parse(t)); }
}

class Request extends Body {
  constructor(input, init = {}) {
    super();
    const base = input instanceof Request ? input : null;
    const url = base ? base.url : input instanceof URL ? input.href : String(input);
    let parsed;
    try { parsed = new URL(url); } catch { throw new TypeError(`Failed to parse URL from ${url}`); }
    this.url = parsed.href;
    this.method = String(init.method ?? base?.method ?? "GET").toUpperCase();
    this.headers = new Headers(init.headers ?? base?.headers);
    this.redirect = init.redirect ?? base?.redirect ?? "follow";
    this.signal = init.signal ?? base?.signal ?? null;
    const [bytes, type] = init.body !== undefined ? bodyBytes(init.body) : [base?._bytes ?? null, null];
    if (bytes && (this.method === "GET" || this.method === "HEAD")) throw new TypeError("Request with GET/HEAD method cannot have body.");
    if (type && !this.headers.has("content-type")) this.headers.set("content-type", type);
    this._initBody(bytes);
  }
  clone() { return new Request(this); }
  get [Symbol.toStringTag]() { return "Request"; }
}

class Response extends Body {
  constructor(body = null, init = {}) {
    super();
    const [bytes, type] = bodyBytes(body);
    this.status = init.status ?? 200;
    this.statusText = init.statusText ?? "";
    this.headers = new Headers(init.headers);
    if (type && !this.headers.has("content-type")) this.headers.set("content-type", type);
    this.type = "default";
    this.url = "";
    this.redirected = false;
    this._initBody(bytes);
  }
  get ok() { return this.status >= 200 && this.status < 300; }
  clone() {
    if (this._used) throw new TypeError("Response.clone: Body has already been consumed.");
    const copy = new Response(this._bytes && new Uint8Array(this._bytes), this);
    Object.assign(copy, { type: this.type, url: this.url, redirected: this.redirected });
    return copy;
  }
  static json(data, init = {}) {
    const headers = new Headers(init.headers);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
    return new Response(JSON.stringify(data), { ...init, headers });
  }
  static error() { const r = new Response(null, { status: 0 }); r.type = "error"; return r; }
  static redirect(url, status = 302) { return new Response(null, { status, headers: { location: String(url) } }); }
  get [Symbol.toStringTag]() { return "Response"; }
}

class AbortSignal extends EventEmitter {
  constructor() { super(); this.aborted = false; this.reason = undefined; this.onabort = null; }
  addEventListener(type, listener) { this.on(type, listener); }
  removeEventListener(type, listener) { this.off(type, listener); }
  throwIfAborted() { if (this.aborted) throw this.reason; }
  _abort(reason) {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason ?? new DOMException("This operation was aborted", "AbortError");
    const event = { type: "abort", target: this };
    if (typeof this.onabort === "function") this.onabort(event);
    this.emit("abort", event);
  }
  static abort(reason) { const s = new AbortSignal(); s._abort(reason); return s; }
  static timeout(ms) {
    const s = new AbortSignal();
    const timer = setTimeout(() => s._abort(new DOMException("The operation was aborted due to timeout", "TimeoutError")), ms);
    timer.unref?.();
    return s;
  }
  get [Symbol.toStringTag]() { return "AbortSignal"; }
}

class AbortController {
  constructor() { this.signal = new AbortSignal(); }
  abort(reason) { this.signal._abort(reason); }
  get [Symbol.toStringTag]() { return "AbortController"; }
}

function fetchFailed(message) {
  return new TypeError(`fetch failed: ${message}`, { cause: new Error(message) });
}

function fetch(input, init = {}) {
  let request;
  try { request = new Request(input, init); } catch (e) { return Promise.reject(e); }
  if (!net.enabled) {
    return Promise.reject(fetchFailed("network access is not enabled for this execution (ask for a `network` policy)"));
  }
  const signal = request.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const body = request._bytes ? Buffer.from(request._bytes).toString("base64") : null;
  return new Promise((resolve, reject) => {
    const id = net.next++;
    net.pending.set(id, { resolve, reject, redirect: request.redirect });
    net.queued.push([id, { method: request.method, url: request.url, headers: request.headers._list, body, follow_redirects: request.redirect === "follow" }]);
    signal?.addEventListener("abort", () => {
      if (!net.pending.delete(id)) return;
      const queued = net.queued.findIndex(([q]) => q === id);
      if (queued >= 0) net.queued.splice(queued, 1); else net.aborted.push(id);
      reject(signal.reason);
    });
  });
}

// The host takes the queued requests and the aborted ones it was making: JSON
// `{"start": [[id, request], ...], "abort": [id, ...]}`, or 0 when there is neither.
function fetchTake() {
  if (net.queued.length === 0 && net.aborted.length === 0) return 0;
  const taken = JSON.stringify({ start: net.queued, abort: net.aborted });
  net.queued = [];
  net.aborted = [];
  return taken;
}

// The host's answer to request `id`: a response, or { error, message }.
function fetchSettle(id, answer) {
  const waiting = net.pending.get(id);
  if (!waiting) return;
  net.pending.delete(id);
  if (answer.error) return waiting.reject(fetchFailed(answer.message));
  if (waiting.redirect === "error" && answer.status >= 300 && answer.status < 400 && answer.headers.some(([k]) => k === "location")) {
    return waiting.reject(fetchFailed(`redirect mode is set to error: ${answer.url} redirected`));
  }
  const response = new Response(null, { status: answer.status, statusText: answer.reason, headers: answer.headers });
  response._initBody(new Uint8Array(Buffer.from(answer.body, "base64")));
  Object.assign(response, { type: "basic", url: answer.url, redirected: answer.redirected });
  waiting.resolve(response);
}
