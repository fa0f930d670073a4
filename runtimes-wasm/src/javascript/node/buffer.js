// Buffer: Node's byte array, a Uint8Array subclass, with the encodings utf8, hex, base64,
// base64url, latin1 (binary), ascii and utf16le (ucs2), and the common read/write helpers.
const BUFFER_ENCODINGS = ["utf8", "utf-8", "hex", "base64", "base64url", "latin1", "binary", "ascii", "utf16le", "utf-16le", "ucs2", "ucs-2"];

function normalizeEncoding(encoding) {
  if (encoding === undefined || encoding === null) return "utf8";
  const lower = String(encoding).toLowerCase();
  switch (lower) {
    case "utf8": case "utf-8": return "utf8";
    case "hex": return "hex";
    case "base64": return "base64";
    case "base64url": return "base64url";
    case "latin1": case "binary": return "latin1";
    case "ascii": return "ascii";
    case "utf16le": case "utf-16le": case "ucs2": case "ucs-2": return "utf16le";
  }
  throw new TypeError(`Unknown encoding: ${encoding}`);
}

function latin1String(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
  return text;
}

function bytesFromString(string, encoding) {
  switch (normalizeEncoding(encoding)) {
    case "utf8": return utf8Encode(string);
    case "hex": {
      const length = string.length >>> 1;
      const out = new Uint8Array(length);
      let n = 0;
      for (; n < length; n++) {
        const byte = parseInt(string.substr(n * 2, 2), 16);
        if (Number.isNaN(byte)) break;
        out[n] = byte;
      }
      return out.slice(0, n);
    }
    case "base64": case "base64url": {
      let clean = string.replace(/[^A-Za-z0-9+/\-_]/g, "").replace(/-/g, "+").replace(/_/g, "/");
      clean = clean.slice(0, clean.length - (clean.length % 4 === 1 ? 1 : 0));
      while (clean.length % 4) clean += "=";
      const binary = atob(clean);
      const out = new Uint8Array(binary.length);
      for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
      return out;
    }
    case "latin1": case "ascii": {
      const out = new Uint8Array(string.length);
      for (let i = 0; i < string.length; i++) out[i] = string.charCodeAt(i) & 0xff;
      return out;
    }
    case "utf16le": {
      const out = new Uint8Array(string.length * 2);
      for (let i = 0; i < string.length; i++) { const c = string.charCodeAt(i); out[i * 2] = c & 0xff; out[i * 2 + 1] = c >> 8; }
      return out;
    }
  }
}

function stringFromBytes(bytes, encoding) {
  switch (normalizeEncoding(encoding)) {
    case "utf8": return utf8Decode(bytes, false, false)[0];
    case "hex": return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    case "base64": return btoa(latin1String(bytes));
    case "base64url": return btoa(latin1String(bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    case "latin1": return latin1String(bytes);
    case "ascii": return latin1String(bytes.map((b) => b & 0x7f));
    case "utf16le": {
      let text = "";
      for (let i = 0; i + 1 < bytes.length; i += 2) text += String.fromCharCode(bytes[i] | (bytes[i + 1] << 8));
      return text;
    }
  }
}

class Buffer extends Uint8Array {
  static from(value, encodingOrOffset, length) {
    if (typeof value === "string") return Buffer.#wrap(bytesFromString(value, encodingOrOffset));
    if (value instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && value instanceof SharedArrayBuffer)) {
      const offset = encodingOrOffset === undefined ? 0 : Number(encodingOrOffset);
      return new Buffer(value, offset, length === undefined ? value.byteLength - offset : Number(length));
    }
    if (ArrayBuffer.isView(value)) return Buffer.#wrap(new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice());
    if (Array.isArray(value)) return Buffer.#wrap(Uint8Array.from(value, (v) => Number(v) & 0xff));
    if (value && value.type === "Buffer" && Array.isArray(value.data)) return Buffer.from(value.data);
    if (value && typeof value.length === "number") return Buffer.#wrap(Uint8Array.from(value));
    if (value && typeof value[Symbol.toPrimitive] === "function") return Buffer.from(value[Symbol.toPrimitive]("string"), encodingOrOffset);
    throw new TypeError("The first argument must be of type string or an instance of Buffer, ArrayBuffer, or Array or an Array-like Object." +
      ` Received ${value === null ? "null" : typeof value}`);
  }
  static #wrap(bytes) { return new Buffer(bytes.buffer, bytes.byteOffset, bytes.length); }
  static alloc(size, fill, encoding) {
    const buffer = new Buffer(checkSize(size));
    if (fill !== undefined && fill !== 0) buffer.fill(fill, 0, buffer.length, encoding);
    return buffer;
  }
  static allocUnsafe(size) { return new Buffer(checkSize(size)); }
  static allocUnsafeSlow(size) { return new Buffer(checkSize(size)); }
  static isBuffer(value) { return value instanceof Buffer; }
  static isEncoding(encoding) { return typeof encoding === "string" && BUFFER_ENCODINGS.includes(encoding.toLowerCase()); }
  static byteLength(value, encoding) {
    if (typeof value !== "string") return value.byteLength;
    return bytesFromString(value, encoding).length;
  }
  static concat(list, totalLength) {
    if (totalLength === undefined) totalLength = list.reduce((sum, b) => sum + b.length, 0);
    const out = Buffer.alloc(totalLength);
    let offset = 0;
    for (const item of list) {
      if (offset >= totalLength) break;
      const bytes = item.subarray(0, totalLength - offset);
      out.set(bytes, offset);
      offset += bytes.length;
    }
    return out;
  }
  static compare(a, b) { return a.compare(b); }

  toString(encoding, start = 0, end = this.length) {
    return stringFromBytes(this.subarray(Math.max(0, start), Math.min(this.length, end)), encoding);
  }
  toJSON() { return { type: "Buffer", data: Array.from(this) }; }
  equals(other) { return this.compare(other) === 0; }
  compare(other, targetStart = 0, targetEnd = other.length, sourceStart = 0, sourceEnd = this.length) {
    const a = this.subarray(sourceStart, sourceEnd), b = other.subarray(targetStart, targetEnd);
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
  }
  write(string, offset = 0, length, encoding) {
    if (typeof offset === "string") { encoding = offset; offset = 0; length = undefined; }
    else if (typeof length === "string") { encoding = length; length = undefined; }
    const bytes = bytesFromString(string, encoding);
    const count = Math.min(bytes.length, this.length - offset, length === undefined ? Infinity : length);
    this.set(bytes.subarray(0, count), offset);
    return count;
  }
  fill(value, start = 0, end = this.length, encoding) {
    if (typeof start === "string") { encoding = start; start = 0; end = this.length; }
    if (typeof value === "string") {
      const bytes = bytesFromString(value, encoding);
      if (bytes.length === 0) return super.fill(0, start, end);
      for (let i = start; i < end; i++) this[i] = bytes[(i - start) % bytes.length];
      return this;
    }
    return super.fill(typeof value === "number" ? value & 0xff : value, start, end);
  }
  copy(target, targetStart = 0, sourceStart = 0, sourceEnd = this.length) {
    const bytes = this.subarray(sourceStart, Math.min(sourceEnd, sourceStart + target.length - targetStart));
    target.set(bytes, targetStart);
    return bytes.length;
  }
  slice(start, end) { return this.subarray(start, end); }
  indexOf(value, byteOffset = 0, encoding) {
    if (typeof value === "number") return super.indexOf(value & 0xff, byteOffset);
    const needle = typeof value === "string" ? bytesFromString(value, encoding) : value;
    if (byteOffset < 0) byteOffset = Math.max(0, this.length + byteOffset);
    outer: for (let i = byteOffset; i <= this.length - needle.length; i++) {
      for (let j = 0; j < needle.length; j++) if (this[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  }
  includes(value, byteOffset, encoding) { return this.indexOf(value, byteOffset, encoding) !== -1; }
  #view() { return new DataView(this.buffer, this.byteOffset, this.byteLength); }
  readUInt8(o = 0) { return this.#view().getUint8(o); }
  readInt8(o = 0) { return this.#view().getInt8(o); }
  readUInt16LE(o = 0) { return this.#view().getUint16(o, true); }
  readUInt16BE(o = 0) { return this.#view().getUint16(o, false); }
  readInt16LE(o = 0) { return this.#view().getInt16(o, true); }
  readInt16BE(o = 0) { return this.#view().getInt16(o, false); }
  readUInt32LE(o = 0) { return this.#view().getUint32(o, true); }
  readUInt32BE(o = 0) { return this.#view().getUint32(o, false); }
  readInt32LE(o = 0) { return this.#view().getInt32(o, true); }
  readInt32BE(o = 0) { return this.#view().getInt32(o, false); }
  readBigUInt64LE(o = 0) { return this.#view().getBigUint64(o, true); }
  readBigUInt64BE(o = 0) { return this.#view().getBigUint64(o, false); }
  readBigInt64LE(o = 0) { return this.#view().getBigInt64(o, true); }
  readBigInt64BE(o = 0) { return this.#view().getBigInt64(o, false); }
  readFloatLE(o = 0) { return this.#view().getFloat32(o, true); }
  readFloatBE(o = 0) { return this.#view().getFloat32(o, false); }
  readDoubleLE(o = 0) { return this.#view().getFloat64(o, true); }
  readDoubleBE(o = 0) { return this.#view().getFloat64(o, false); }
  writeUInt8(v, o = 0) { this.#view().setUint8(o, v); return o + 1; }
  writeInt8(v, o = 0) { this.#view().setInt8(o, v); return o + 1; }
  writeUInt16LE(v, o = 0) { this.#view().setUint16(o, v, true); return o + 2; }
  writeUInt16BE(v, o = 0) { this.#view().setUint16(o, v, false); return o + 2; }
  writeInt16LE(v, o = 0) { this.#view().setInt16(o, v, true); return o + 2; }
  writeInt16BE(v, o = 0) { this.#view().setInt16(o, v, false); return o + 2; }
  writeUInt32LE(v, o = 0) { this.#view().setUint32(o, v, true); return o + 4; }
  writeUInt32BE(v, o = 0) { this.#view().setUint32(o, v, false); return o + 4; }
  writeInt32LE(v, o = 0) { this.#view().setInt32(o, v, true); return o + 4; }
  writeInt32BE(v, o = 0) { this.#view().setInt32(o, v, false); return o + 4; }
  writeFloatLE(v, o = 0) { this.#view().setFloat32(o, v, true); return o + 4; }
  writeFloatBE(v, o = 0) { this.#view().setFloat32(o, v, false); return o + 4; }
  writeDoubleLE(v, o = 0) { this.#view().setFloat64(o, v, true); return o + 8; }
  writeDoubleBE(v, o = 0) { this.#view().setFloat64(o, v, false); return o + 8; }
}
for (const name of ["readUInt8", "readUInt16LE", "readUInt16BE", "readUInt32LE", "readUInt32BE", "writeUInt8",
  "writeUInt16LE", "writeUInt16BE", "writeUInt32LE", "writeUInt32BE", "readBigUInt64LE", "readBigUInt64BE"]) {
  Buffer.prototype[name.replace("UInt", "Uint")] = Buffer.prototype[name];
}

function checkSize(size) {
  if (typeof size !== "number" || !(size >= 0) || size > 2 ** 31) {
    throw new RangeError(`The argument 'size' is invalid. Received ${size}`);
  }
  return size;
}
