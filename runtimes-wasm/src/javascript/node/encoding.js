// TextEncoder and TextDecoder (UTF-8, plus UTF-16LE and Latin-1 for decoding), as the WHATWG
// Encoding standard defines them: invalid input becomes U+FFFD unless `fatal`.
function utf8Encode(string) {
  const out = new Uint8Array(string.length * 3);
  let n = 0;
  for (let i = 0; i < string.length; i++) {
    let c = string.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < string.length) {
      const d = string.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; }
      else c = 0xfffd;
    } else if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x80) out[n++] = c;
    else if (c < 0x800) { out[n++] = 0xc0 | (c >> 6); out[n++] = 0x80 | (c & 63); }
    else if (c < 0x10000) { out[n++] = 0xe0 | (c >> 12); out[n++] = 0x80 | ((c >> 6) & 63); out[n++] = 0x80 | (c & 63); }
    else { out[n++] = 0xf0 | (c >> 18); out[n++] = 0x80 | ((c >> 12) & 63); out[n++] = 0x80 | ((c >> 6) & 63); out[n++] = 0x80 | (c & 63); }
  }
  return out.slice(0, n);
}

// Decodes `bytes` from `start`; returns [text, index of an incomplete trailing sequence].
function utf8Decode(bytes, fatal, stream) {
  let text = "";
  let chunk = [];
  let i = 0;
  const bad = () => {
    if (fatal) throw new TypeError("The encoded data was not valid for encoding utf-8");
    chunk.push(0xfffd);
  };
  while (i < bytes.length) {
    const b = bytes[i];
    let need = 0, c = 0, lower = 0x80, upper = 0xbf;
    if (b < 0x80) { chunk.push(b); i++; }
    else {
      if (b >= 0xc2 && b <= 0xdf) { need = 1; c = b & 0x1f; }
      else if (b >= 0xe0 && b <= 0xef) { need = 2; c = b & 0xf; if (b === 0xe0) lower = 0xa0; if (b === 0xed) upper = 0x9f; }
      else if (b >= 0xf0 && b <= 0xf4) { need = 3; c = b & 0x7; if (b === 0xf0) lower = 0x90; if (b === 0xf4) upper = 0x8f; }
      else { bad(); i++; continue; }
      let j = 1;
      for (; j <= need; j++) {
        if (i + j >= bytes.length) break;
        const next = bytes[i + j];
        if (next < (j === 1 ? lower : 0x80) || next > (j === 1 ? upper : 0xbf)) break;
        c = (c << 6) | (next & 0x3f);
      }
      if (j <= need) {
        if (i + j >= bytes.length && stream) break;
        bad(); i += j; continue;
      }
      i += need + 1;
      if (c >= 0x10000) { c -= 0x10000; chunk.push(0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff)); }
      else chunk.push(c);
    }
    if (chunk.length >= 8192) { text += String.fromCharCode.apply(null, chunk); chunk = []; }
  }
  text += String.fromCharCode.apply(null, chunk);
  return [text, i];
}

function toBytes(input) {
  if (input === undefined) return new Uint8Array(0);
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && input instanceof SharedArrayBuffer)) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  throw new TypeError('The "input" argument must be an instance of ArrayBuffer or ArrayBufferView');
}

class TextEncoder {
  get encoding() { return "utf-8"; }
  encode(input = "") { return utf8Encode(String(input)); }
  encodeInto(source, destination) {
    const bytes = utf8Encode(String(source));
    let read = 0, written = 0;
    // Whole characters only: count the UTF-16 units of each character that fits.
    for (let i = 0; i < source.length;) {
      const c = source.codePointAt(i);
      const size = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
      if (written + size > destination.length) break;
      destination.set(bytes.subarray(written, written + size), written);
      written += size;
      const units = c >= 0x10000 ? 2 : 1;
      read += units;
      i += units;
    }
    return { read, written };
  }
}

const ENCODING_LABELS = {
  "utf-8": "utf-8", "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8",
  "utf-16le": "utf-16le", "utf-16": "utf-16le",
  "latin1": "windows-1252", "iso-8859-1": "windows-1252", "ascii": "windows-1252", "us-ascii": "windows-1252", "windows-1252": "windows-1252",
};

class TextDecoder {
  #encoding; #fatal; #ignoreBOM; #pending = new Uint8Array(0); #started = false;
  constructor(label = "utf-8", options = {}) {
    const encoding = ENCODING_LABELS[String(label).trim().toLowerCase()];
    if (!encoding) throw new RangeError(`The "${label}" encoding is not supported`);
    this.#encoding = encoding;
    this.#fatal = Boolean(options.fatal);
    this.#ignoreBOM = Boolean(options.ignoreBOM);
  }
  get encoding() { return this.#encoding; }
  get fatal() { return this.#fatal; }
  get ignoreBOM() { return this.#ignoreBOM; }
  decode(input, options = {}) {
    let bytes = toBytes(input);
    const stream = Boolean(options.stream);
    if (this.#pending.length) {
      const joined = new Uint8Array(this.#pending.length + bytes.length);
      joined.set(this.#pending);
      joined.set(bytes, this.#pending.length);
      bytes = joined;
    }
    let text;
    if (this.#encoding === "utf-8") {
      const [decoded, used] = utf8Decode(bytes, this.#fatal, stream);
      text = decoded;
      this.#pending = bytes.slice(used);
    } else if (this.#encoding === "utf-16le") {
      const even = stream ? bytes.length & ~1 : bytes.length;
      let units = [];
      text = "";
      for (let i = 0; i + 1 < even; i += 2) {
        units.push(bytes[i] | (bytes[i + 1] << 8));
        if (units.length >= 8192) { text += String.fromCharCode.apply(null, units); units = []; }
      }
      text += String.fromCharCode.apply(null, units);
      if (!stream && bytes.length & 1) text += "\ufffd";
      this.#pending = bytes.slice(even);
    } else {
      text = "";
      for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
      this.#pending = new Uint8Array(0);
    }
    if (!this.#started && !this.#ignoreBOM && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    this.#started = stream;
    return text;
  }
}
