// Randomness and hashes. Every guest is seeded by the host with 256 bits of fresh entropy
// (`reseed`, called per guest and per fork): `crypto.getRandomValues`, `randomUUID` and
// `randomBytes` read a ChaCha20 keystream under that key, and `Math.random` is a
// xoshiro128** generator seeded from it (the snapshot's own state is the same in every guest,
// so it is never used). `createHash` and `createHmac` cover md5, sha1 and sha256.
const random = (() => {
  const key = new Uint32Array(8);
  const block = new Uint8Array(64);
  const state = new Uint32Array(16);
  const words = new Uint32Array(block.buffer);
  let counter = 0;
  let available = 0;
  const rotl = (x, n) => (x << n) | (x >>> (32 - n));
  function quarter(s, a, b, c, d) {
    s[a] += s[b]; s[d] = rotl(s[d] ^ s[a], 16);
    s[c] += s[d]; s[b] = rotl(s[b] ^ s[c], 12);
    s[a] += s[b]; s[d] = rotl(s[d] ^ s[a], 8);
    s[c] += s[d]; s[b] = rotl(s[b] ^ s[c], 7);
  }
  function refill() {
    const input = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574, ...key, counter++, 0, 0, 0];
    state.set(input);
    for (let i = 0; i < 10; i++) {
      quarter(state, 0, 4, 8, 12); quarter(state, 1, 5, 9, 13); quarter(state, 2, 6, 10, 14); quarter(state, 3, 7, 11, 15);
      quarter(state, 0, 5, 10, 15); quarter(state, 1, 6, 11, 12); quarter(state, 2, 7, 8, 13); quarter(state, 3, 4, 9, 14);
    }
    for (let i = 0; i < 16; i++) words[i] = (state[i] + input[i]) >>> 0;
    available = 64;
  }
  function fill(bytes) {
    for (let i = 0; i < bytes.length; i++) {
      if (available === 0) refill();
      bytes[i] = block[64 - available--];
    }
    return bytes;
  }
  function reseed(seed) {
    for (let i = 0; i < 8; i++) key[i] = seed[i] >>> 0;
    counter = 0;
    available = 0;
    const s = new Int32Array(4);
    fill(new Uint8Array(s.buffer));
    let [a, b, c, d] = s;
    if ((a | b | c | d) === 0) a = 1;
    const next = () => {
      const result = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
      const t = b << 9;
      c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = rotl(d, 11);
      return result;
    };
    Object.defineProperty(Math, "random", {
      value: function random() { return ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992; },
      writable: true, configurable: true, enumerable: false,
    });
  }
  return { fill, reseed };
})();

function getRandomValues(array) {
  if (!ArrayBuffer.isView(array) || array instanceof Float32Array || array instanceof Float64Array || array instanceof DataView) {
    throw new TypeError("The data argument must be an integer-type TypedArray");
  }
  if (array.byteLength > 65536) {
    throw new DOMException(`The ArrayBufferView's byte length (${array.byteLength}) exceeds the number of bytes of entropy available via this API (65536)`, "QuotaExceededError");
  }
  random.fill(new Uint8Array(array.buffer, array.byteOffset, array.byteLength));
  return array;
}

function randomUUID() {
  const b = random.fill(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// Merkle–Damgård hashes over 64-byte blocks: md5 (little-endian), sha1 and sha256 (big-endian).
const HASHES = (() => {
  const K256 = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01,
    0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
    0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08,
    0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);
  const rotl = (x, n) => (x << n) | (x >>> (32 - n));
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  const K_MD5 = new Uint32Array(64).map((_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32));
  const S_MD5 = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
  const w = new Uint32Array(80);
  return {
    sha256: {
      init: () => new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]),
      bigEndian: true, size: 32,
      block(h, view, off) {
        for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
        for (let i = 16; i < 64; i++) {
          const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
          const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
          w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        let [a, b, c, d, e, f, g, hh] = h;
        for (let i = 0; i < 64; i++) {
          const t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
          const t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
          hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
      },
    },
    sha1: {
      init: () => new Uint32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0]),
      bigEndian: true, size: 20,
      block(h, view, off) {
        for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
        for (let i = 16; i < 80; i++) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        let [a, b, c, d, e] = h;
        for (let i = 0; i < 80; i++) {
          const [f, k] = i < 20 ? [(b & c) | (~b & d), 0x5a827999] : i < 40 ? [b ^ c ^ d, 0x6ed9eba1]
            : i < 60 ? [(b & c) | (b & d) | (c & d), 0x8f1bbcdc] : [b ^ c ^ d, 0xca62c1d6];
          const t = (rotl(a, 5) + f + e + k + w[i]) | 0;
          e = d; d = c; c = rotl(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
      },
    },
    md5: {
      init: () => new Uint32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]),
      bigEndian: false, size: 16,
      block(h, view, off) {
        for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4, true);
        let [a, b, c, d] = h;
        for (let i = 0; i < 64; i++) {
          let f, g;
          if (i < 16) { f = (b & c) | (~b & d); g = i; }
          else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) % 16; }
          else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) % 16; }
          else { f = c ^ (b | ~d); g = (7 * i) % 16; }
          const t = d; d = c; c = b;
          b = (b + rotl((a + f + K_MD5[i] + w[g]) | 0, S_MD5[(i >> 4) * 4 + (i % 4)])) | 0;
          a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d;
      },
    },
  };
})();

function hashAlgorithm(name) {
  const algorithm = HASHES[String(name).toLowerCase().replace("-", "")];
  if (!algorithm) {
    const error = new Error(`Digest method not supported: ${name} (SoulBox's WebAssembly JavaScript has md5, sha1 and sha256)`);
    error.code = "ERR_CRYPTO_INVALID_DIGEST";
    throw error;
  }
  return algorithm;
}

function toInputBytes(data, encoding) {
  if (typeof data === "string") return bytesFromString(data, encoding);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError('The "data" argument must be of type string or an instance of Buffer, TypedArray, or DataView.');
}

class Hash {
  #algorithm; #state; #chunks = []; #length = 0; #done = false;
  constructor(name) { this.#algorithm = hashAlgorithm(name); this.#state = this.#algorithm.init(); }
  update(data, encoding) {
    if (this.#done) throw new Error("Digest already called");
    const bytes = toInputBytes(data, encoding);
    this.#chunks.push(bytes.slice());
    this.#length += bytes.length;
    return this;
  }
  digest(encoding) {
    if (this.#done) throw new Error("Digest already called");
    this.#done = true;
    const a = this.#algorithm;
    const padded = new Uint8Array(((this.#length + 8) >> 6) * 64 + 64);
    let offset = 0;
    for (const chunk of this.#chunks) { padded.set(chunk, offset); offset += chunk.length; }
    padded[this.#length] = 0x80;
    const view = new DataView(padded.buffer);
    const bits = this.#length * 8;
    if (a.bigEndian) { view.setUint32(padded.length - 8, Math.floor(bits / 2 ** 32)); view.setUint32(padded.length - 4, bits >>> 0); }
    else { view.setUint32(padded.length - 8, bits >>> 0, true); view.setUint32(padded.length - 4, Math.floor(bits / 2 ** 32), true); }
    for (let off = 0; off < padded.length; off += 64) a.block(this.#state, view, off);
    const out = Buffer.alloc(a.size);
    const outView = new DataView(out.buffer, out.byteOffset, out.length);
    for (let i = 0; i < this.#state.length; i++) outView.setUint32(i * 4, this.#state[i], !a.bigEndian);
    return encoding === undefined || encoding === "buffer" ? out : out.toString(encoding);
  }
  copy() { const copy = new Hash(this.#algorithm === HASHES.md5 ? "md5" : this.#algorithm === HASHES.sha1 ? "sha1" : "sha256"); for (const c of this.#chunks) copy.update(c); return copy; }
}

class Hmac {
  #inner; #outerKey; #name; #done = false;
  constructor(name, key) {
    this.#name = name;
    let keyBytes = toInputBytes(key);
    if (keyBytes.length > 64) keyBytes = new Hash(name).update(keyBytes).digest();
    const padded = new Uint8Array(64);
    padded.set(keyBytes);
    this.#outerKey = padded.map((b) => b ^ 0x5c);
    this.#inner = new Hash(name).update(padded.map((b) => b ^ 0x36));
  }
  update(data, encoding) { this.#inner.update(data, encoding); return this; }
  digest(encoding) {
    if (this.#done) throw new Error("Digest already called");
    this.#done = true;
    return new Hash(this.#name).update(this.#outerKey).update(this.#inner.digest()).digest(encoding);
  }
}

function randomBytes(size, callback) {
  const bytes = random.fill(Buffer.alloc(checkSize(size)));
  if (typeof callback === "function") { queueMicrotask(() => callback(null, bytes)); return undefined; }
  return bytes;
}

function randomInt(min, max, callback) {
  if (max === undefined || typeof max === "function") { callback = max; max = min; min = 0; }
  const range = max - min;
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || range <= 0 || range > 2 ** 48) {
    throw new RangeError(`The "max" argument must be greater than "min" and the range at most 2^48. Received min ${min}, max ${max}`);
  }
  const limit = 2 ** 48 - (2 ** 48 % range);
  let value;
  do {
    const b = random.fill(new Uint8Array(6));
    value = b.reduce((n, x) => n * 256 + x, 0);
  } while (value >= limit);
  const result = min + (value % range);
  if (typeof callback === "function") { queueMicrotask(() => callback(null, result)); return undefined; }
  return result;
}

const webCrypto = {
  getRandomValues,
  randomUUID,
  get subtle() { throw unsupported("crypto.subtle"); },
};
