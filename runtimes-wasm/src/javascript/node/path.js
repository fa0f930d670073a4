// `path`: POSIX paths (the guest's file system is POSIX); `path.posix` is the same object and
// `path.win32` is not provided.
function assertPath(path) {
  if (typeof path !== "string") throw new TypeError(`The "path" argument must be of type string. Received ${inspect(path)}`);
}

function normalizeString(path, allowAboveRoot) {
  const out = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (out.length && out[out.length - 1] !== "..") out.pop();
      else if (allowAboveRoot) out.push("..");
    } else out.push(segment);
  }
  return out.join("/");
}

const path = {
  sep: "/",
  delimiter: ":",
  normalize(p) {
    assertPath(p);
    if (p === "") return ".";
    const absolute = p.startsWith("/");
    const trailing = p.endsWith("/");
    let normalized = normalizeString(p, !absolute);
    if (normalized === "" && !absolute) normalized = ".";
    if (normalized !== "" && trailing) normalized += "/";
    return absolute ? "/" + normalized : normalized;
  },
  join(...parts) {
    parts.forEach(assertPath);
    const joined = parts.filter((p) => p !== "").join("/");
    return joined === "" ? "." : path.normalize(joined);
  },
  resolve(...parts) {
    let resolved = "";
    for (let i = parts.length - 1; i >= -1 && !resolved.startsWith("/"); i--) {
      const p = i >= 0 ? parts[i] : process.cwd();
      assertPath(p);
      if (p !== "") resolved = resolved === "" ? p : `${p}/${resolved}`;
    }
    const normalized = normalizeString(resolved, false);
    return "/" + normalized;
  },
  isAbsolute(p) { assertPath(p); return p.startsWith("/"); },
  dirname(p) {
    assertPath(p);
    if (p === "") return ".";
    const trimmed = p.replace(/\/+$/, "");
    if (trimmed === "") return "/";
    const index = trimmed.lastIndexOf("/");
    if (index < 0) return ".";
    const dir = trimmed.slice(0, index).replace(/\/+$/, "");
    return dir === "" ? "/" : dir;
  },
  basename(p, ext) {
    assertPath(p);
    const trimmed = p.replace(/\/+$/, "");
    let base = trimmed.slice(trimmed.lastIndexOf("/") + 1);
    if (ext !== undefined && base.endsWith(ext) && base !== ext) base = base.slice(0, base.length - ext.length);
    return base;
  },
  extname(p) {
    const base = path.basename(p);
    const index = base.lastIndexOf(".");
    return index <= 0 ? "" : base.slice(index);
  },
  relative(from, to) {
    const a = path.resolve(from).split("/").filter(Boolean);
    const b = path.resolve(to).split("/").filter(Boolean);
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    return [...Array(a.length - i).fill(".."), ...b.slice(i)].join("/");
  },
  parse(p) {
    assertPath(p);
    const root = p.startsWith("/") ? "/" : "";
    const base = path.basename(p);
    const ext = path.extname(p);
    let dir = path.dirname(p);
    if (dir === "." && !p.includes("/")) dir = "";
    return { root, dir, base, ext, name: ext ? base.slice(0, base.length - ext.length) : base };
  },
  format(o) {
    const dir = o.dir || o.root || "";
    const base = o.base || `${o.name || ""}${o.ext ? (o.ext.startsWith(".") ? "" : ".") + o.ext : ""}`;
    return dir === "" ? base : dir === o.root ? `${dir}${base}` : `${dir}/${base}`;
  },
  toNamespacedPath: (p) => p,
  matchesGlob(p, pattern) {
    const regex = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*\*\/?/g, "\u0000").replace(/\*/g, "[^/]*")
      .replace(/\?/g, "[^/]").replace(/\u0000/g, ".*");
    return new RegExp(`^${regex}$`).test(p);
  },
};
path.posix = path;
const pathModule = path;
