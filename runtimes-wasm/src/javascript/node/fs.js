// `fs` and `fs/promises` over the guest's file system (the sandbox's workspace), through
// QuickJS's `std` and `os`: the synchronous API, the promise API (the same work, settled as
// promises) and the callback API (called back from the event loop). Errors are Node's: `code`
// (ENOENT, ...), Linux `errno`, `syscall` and `path`. Not provided (they throw, naming
// themselves): watching, streams other than a whole-file write stream, links and permissions.

// WASI errno -> [code, Linux errno, message].
const ERRNO = {
  2: ["EACCES", -13, "permission denied"], 8: ["EBADF", -9, "bad file descriptor"],
  20: ["EEXIST", -17, "file already exists"], 22: ["EFBIG", -27, "file too large"],
  28: ["EINVAL", -22, "invalid argument"], 29: ["EIO", -5, "i/o error"],
  31: ["EISDIR", -21, "illegal operation on a directory"], 32: ["ELOOP", -40, "too many symbolic links encountered"],
  33: ["EMFILE", -24, "too many open files"], 37: ["ENAMETOOLONG", -36, "name too long"],
  44: ["ENOENT", -2, "no such file or directory"], 51: ["ENOSPC", -28, "no space left on device"],
  52: ["ENOSYS", -38, "function not implemented"], 54: ["ENOTDIR", -20, "not a directory"],
  55: ["ENOTEMPTY", -39, "directory not empty"], 58: ["ENOTSUP", -95, "operation not supported"],
  63: ["EPERM", -1, "operation not permitted"], 69: ["EROFS", -30, "read-only file system"],
  75: ["EXDEV", -18, "cross-device link not permitted"], 76: ["EACCES", -13, "permission denied"],
};

function fsError(wasiErrno, syscall, path, dest) {
  const [code, errno, message] = ERRNO[wasiErrno] || ["EIO", -5, std.strerror(wasiErrno)];
  const target = path === undefined ? "" : ` '${path}'${dest === undefined ? "" : ` -> '${dest}'`}`;
  const error = new Error(`${code}: ${message}, ${syscall}${target}`);
  Object.assign(error, { errno, code, syscall });
  if (path !== undefined) error.path = path;
  if (dest !== undefined) error.dest = dest;
  return error;
}

function toPath(path) {
  if (path instanceof URL) {
    if (path.protocol !== "file:") throw new TypeError("The URL must be of scheme file");
    return decodeURIComponent(path.pathname);
  }
  if (Buffer.isBuffer(path)) return path.toString();
  if (typeof path !== "string") throw new TypeError(`The "path" argument must be of type string or an instance of Buffer or URL. Received ${inspect(path)}`);
  return path;
}

function encodingOf(options) {
  return typeof options === "string" ? options : options && options.encoding ? options.encoding : null;
}

class Stats {
  constructor(raw) {
    Object.assign(this, {
      dev: raw.dev, mode: raw.mode, nlink: raw.nlink, uid: raw.uid, gid: raw.gid, rdev: raw.rdev, blksize: 4096,
      ino: raw.ino, size: raw.size, blocks: raw.blocks, atimeMs: raw.atime, mtimeMs: raw.mtime, ctimeMs: raw.ctime,
      birthtimeMs: raw.ctime, atime: new Date(raw.atime), mtime: new Date(raw.mtime), ctime: new Date(raw.ctime),
      birthtime: new Date(raw.ctime),
    });
  }
  isFile() { return (this.mode & os.S_IFMT) === os.S_IFREG; }
  isDirectory() { return (this.mode & os.S_IFMT) === os.S_IFDIR; }
  isSymbolicLink() { return (this.mode & os.S_IFMT) === os.S_IFLNK; }
  isFIFO() { return (this.mode & os.S_IFMT) === os.S_IFIFO; }
  isSocket() { return (this.mode & os.S_IFMT) === os.S_IFSOCK; }
  isBlockDevice() { return (this.mode & os.S_IFMT) === os.S_IFBLK; }
  isCharacterDevice() { return (this.mode & os.S_IFMT) === os.S_IFCHR; }
}

class Dirent {
  constructor(name, parentPath, mode) { this.name = name; this.parentPath = parentPath; this.path = parentPath; this[Symbol.for("soulbox.mode")] = mode; }
  isFile() { return (this[Symbol.for("soulbox.mode")] & os.S_IFMT) === os.S_IFREG; }
  isDirectory() { return (this[Symbol.for("soulbox.mode")] & os.S_IFMT) === os.S_IFDIR; }
  isSymbolicLink() { return (this[Symbol.for("soulbox.mode")] & os.S_IFMT) === os.S_IFLNK; }
}

function rawStat(path, syscall) {
  const [raw, errno] = os.stat(path);
  if (errno) throw fsError(errno, syscall, path);
  return raw;
}

function openFile(path, mode, syscall) {
  const error = {};
  const file = std.open(path, mode, error);
  if (!file) throw fsError(error.errno, syscall, path);
  return file;
}

function writeAll(path, data, options, append) {
  path = toPath(path);
  const flag = (options && typeof options === "object" && options.flag) || (append ? "a" : "w");
  const bytes = typeof data === "string" ? bytesFromString(data, encodingOf(options) || "utf8") : toInputBytes(data);
  const file = openFile(path, flag.replace(/b/g, "") + "b", "open");
  try {
    const copy = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
    if (copy.length && file.write(copy.buffer, 0, copy.length) !== copy.length) throw fsError(29, "write", path);
  } finally {
    file.close();
  }
}

function removeTree(path) {
  const raw = rawStat(path, "rm");
  if ((raw.mode & os.S_IFMT) === os.S_IFDIR) {
    const [names, errno] = os.readdir(path);
    if (errno) throw fsError(errno, "scandir", path);
    for (const name of names) if (name !== "." && name !== "..") removeTree(`${path}/${name}`);
  }
  const errno = -os.remove(path);
  if (errno) throw fsError(errno, "rm", path);
}

const fs = {
  constants: { F_OK: 0, R_OK: 4, W_OK: 2, X_OK: 1, O_RDONLY: 0, O_WRONLY: 1, O_RDWR: 2, O_CREAT: 64, O_EXCL: 128, O_TRUNC: 512, O_APPEND: 1024, COPYFILE_EXCL: 1 },
  Stats,
  Dirent,
  readFileSync(path, options) {
    if (typeof path === "number") throw unsupported("fs.readFileSync of a file descriptor");
    path = toPath(path);
    const file = openFile(path, "rb", "open");
    let bytes;
    try {
      const buffer = file.readAsArrayBuffer();
      if (buffer === null || file.error()) throw fsError(31, "read", path);
      bytes = Buffer.from(buffer);
    } finally {
      file.close();
    }
    const encoding = encodingOf(options);
    return encoding ? bytes.toString(encoding) : bytes;
  },
  writeFileSync(path, data, options) { writeAll(path, data, options, false); },
  appendFileSync(path, data, options) { writeAll(path, data, options, true); },
  existsSync(path) {
    try { return os.stat(toPath(path))[1] === 0; } catch { return false; }
  },
  accessSync(path) { rawStat(toPath(path), "access"); },
  statSync(path, options) {
    path = toPath(path);
    const [raw, errno] = os.stat(path);
    if (errno) {
      if (options && options.throwIfNoEntry === false && errno === 44) return undefined;
      throw fsError(errno, "stat", path);
    }
    return new Stats(raw);
  },
  lstatSync(path, options) {
    path = toPath(path);
    const [raw, errno] = (os.lstat || os.stat)(path);
    if (errno) {
      if (options && options.throwIfNoEntry === false && errno === 44) return undefined;
      throw fsError(errno, "lstat", path);
    }
    return new Stats(raw);
  },
  readdirSync(path, options) {
    path = toPath(path);
    const [names, errno] = os.readdir(path);
    if (errno) throw fsError(errno, "scandir", path);
    const entries = names.filter((n) => n !== "." && n !== "..").sort();
    const recursive = options && options.recursive;
    const out = [];
    for (const name of entries) {
      const full = `${path.replace(/\/+$/, "")}/${name}`;
      const [raw] = os.stat(full);
      const mode = raw ? raw.mode : 0;
      out.push(options && options.withFileTypes ? new Dirent(name, path, mode) : name);
      if (recursive && (mode & os.S_IFMT) === os.S_IFDIR) {
        for (const child of fs.readdirSync(full, options)) {
          out.push(options.withFileTypes ? child : `${name}/${child}`);
        }
      }
    }
    return out;
  },
  mkdirSync(path, options) {
    path = toPath(path);
    const recursive = typeof options === "object" && options !== null && options.recursive;
    const mode = typeof options === "number" ? options : (options && options.mode) || 0o777;
    if (!recursive) {
      const errno = -os.mkdir(path, mode);
      if (errno) throw fsError(errno, "mkdir", path);
      return undefined;
    }
    let first;
    let current = path.startsWith("/") ? "" : ".";
    for (const segment of path.split("/").filter(Boolean)) {
      current += "/" + segment;
      const errno = -os.mkdir(current, mode);
      if (errno === 0) { if (first === undefined) first = path.startsWith("/") ? current : current.slice(2); continue; }
      if (errno === 20 && (rawStat(current, "mkdir").mode & os.S_IFMT) === os.S_IFDIR) continue;
      throw fsError(errno === 20 ? 54 : errno, "mkdir", path);
    }
    return first;
  },
  mkdtempSync(prefix) {
    for (let i = 0; i < 100; i++) {
      const candidate = prefix + randomBytes(3).toString("hex").slice(0, 6);
      if (os.mkdir(candidate, 0o700) === 0) return candidate;
    }
    throw fsError(20, "mkdtemp", prefix);
  },
  rmSync(path, options) {
    path = toPath(path);
    const [raw, errno] = os.stat(path);
    if (errno) {
      if (options && options.force && errno === 44) return;
      throw fsError(errno, "rm", path);
    }
    if ((raw.mode & os.S_IFMT) === os.S_IFDIR && !(options && options.recursive)) {
      const error = new Error(`Path is a directory: rm returned EISDIR (is a directory) ${path}`);
      error.code = "ERR_FS_EISDIR";
      throw error;
    }
    removeTree(path);
  },
  rmdirSync(path, options) {
    path = toPath(path);
    if (options && options.recursive) return removeTree(path);
    if ((rawStat(path, "rmdir").mode & os.S_IFMT) !== os.S_IFDIR) throw fsError(54, "rmdir", path);
    const errno = -os.remove(path);
    if (errno) throw fsError(errno, "rmdir", path);
  },
  unlinkSync(path) {
    path = toPath(path);
    if ((rawStat(path, "unlink").mode & os.S_IFMT) === os.S_IFDIR) throw fsError(31, "unlink", path);
    const errno = -os.remove(path);
    if (errno) throw fsError(errno, "unlink", path);
  },
  renameSync(from, to) {
    from = toPath(from); to = toPath(to);
    const errno = -os.rename(from, to);
    if (errno) throw fsError(errno, "rename", from, to);
  },
  copyFileSync(from, to, mode) {
    from = toPath(from); to = toPath(to);
    if (mode & 1 && fs.existsSync(to)) throw fsError(20, "copyfile", from, to);
    fs.writeFileSync(to, fs.readFileSync(from));
  },
  cpSync(from, to, options) {
    from = toPath(from); to = toPath(to);
    if (fs.statSync(from).isDirectory()) {
      if (!(options && options.recursive)) {
        const error = new Error(`Recursive option is required to copy a directory: ${from}`);
        error.code = "ERR_FS_EISDIR";
        throw error;
      }
      fs.mkdirSync(to, { recursive: true });
      for (const name of fs.readdirSync(from)) fs.cpSync(`${from}/${name}`, `${to}/${name}`, options);
    } else fs.copyFileSync(from, to);
  },
  realpathSync(path) {
    path = toPath(path);
    rawStat(path, "realpath");
    return pathModule.resolve(path);
  },
  truncateSync(path, length = 0) {
    path = toPath(path);
    const bytes = fs.readFileSync(path);
    const out = Buffer.alloc(length);
    out.set(bytes.subarray(0, length));
    fs.writeFileSync(path, out);
  },
  openSync(path, flags = "r", mode = 0o666) {
    path = toPath(path);
    const FLAGS = { r: os.O_RDONLY, "r+": os.O_RDWR, w: os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
      a: os.O_WRONLY | os.O_CREAT | os.O_APPEND, "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND, wx: os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC };
    const fd = os.open(path, typeof flags === "number" ? flags : FLAGS[flags], mode);
    if (fd < 0) throw fsError(-fd, "open", path);
    return fd;
  },
  closeSync(fd) { const errno = -os.close(fd); if (errno) throw fsError(errno, "close"); },
  writeSync(fd, data, offsetOrPosition, lengthOrEncoding) {
    const bytes = typeof data === "string" ? bytesFromString(data, typeof lengthOrEncoding === "string" ? lengthOrEncoding : "utf8") : toInputBytes(data);
    const offset = typeof data === "string" ? 0 : offsetOrPosition || 0;
    const length = typeof data === "string" ? bytes.length : typeof lengthOrEncoding === "number" ? lengthOrEncoding : bytes.length - offset;
    const copy = bytes.slice(offset, offset + length);
    const written = os.write(fd, copy.buffer, 0, copy.length);
    if (written < 0) throw fsError(-written, "write");
    return written;
  },
  readSync(fd, buffer, offset = 0, length = buffer.byteLength - offset) {
    if (typeof offset === "object" && offset !== null) ({ offset = 0, length = buffer.byteLength - offset } = offset);
    const scratch = new Uint8Array(length);
    const read = os.read(fd, scratch.buffer, 0, length);
    if (read < 0) throw fsError(-read, "read");
    new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength).set(scratch.subarray(0, read), offset);
    return read;
  },
  createWriteStream(path, options) {
    path = toPath(path);
    const append = options && options.flags && options.flags.startsWith("a");
    writeAll(path, "", options, append);
    const stream = new EventEmitter();
    let ended = false;
    stream.bytesWritten = 0;
    stream.path = path;
    stream.writable = true;
    stream.write = (chunk, encoding, callback) => {
      if (typeof encoding === "function") { callback = encoding; encoding = undefined; }
      if (ended) throw new Error("write after end");
      const bytes = typeof chunk === "string" ? bytesFromString(chunk, encoding || "utf8") : toInputBytes(chunk);
      writeAll(path, bytes, undefined, true);
      stream.bytesWritten += bytes.length;
      if (callback) setImmediate(callback, null);
      return true;
    };
    stream.end = (chunk, encoding, callback) => {
      if (typeof chunk === "function") { callback = chunk; chunk = undefined; }
      if (typeof encoding === "function") { callback = encoding; encoding = undefined; }
      if (chunk !== undefined && chunk !== null) stream.write(chunk, encoding);
      ended = true;
      stream.writable = false;
      setImmediate(() => { stream.emit("finish"); stream.emit("close"); if (callback) callback(); });
      return stream;
    };
    stream.close = (callback) => stream.end(callback);
    return stream;
  },
};
for (const name of ["watch", "watchFile", "symlinkSync", "linkSync", "readlinkSync", "chmodSync", "chownSync", "createReadStream"]) {
  fs[name] = () => { throw unsupported(`fs.${name}`); };
}

// The promise and callback forms of every synchronous function.
const fsPromises = {};
for (const name of Object.keys(fs)) {
  if (!name.endsWith("Sync") || name === "existsSync") continue;
  const sync = fs[name];
  const base = name.slice(0, -4);
  fsPromises[base] = (...args) => new Promise((resolve) => resolve(sync(...args)));
  fs[base] = (...args) => {
    const callback = args.pop();
    if (typeof callback !== "function") throw new TypeError(`The "cb" argument must be of type function. Received ${inspect(callback)}`);
    setImmediate(() => {
      let result;
      try { result = sync(...args); } catch (error) { callback(error); return; }
      callback(null, result);
    });
  };
}
fs.exists = (path, callback) => setImmediate(() => callback(fs.existsSync(path)));
fsPromises.constants = fs.constants;
fs.promises = fsPromises;
