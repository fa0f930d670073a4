#!/usr/bin/env python3
"""Turns `perf script -F ip` samples of a SoulBox server into the Python interpreter's hot
functions, hottest first (the list `runtimes-wasm/src/python/hot-functions.txt` holds).

    resolve.py SNAPSHOT.wasm MODULE.cwasm MAPS IPS CURRENT_LIST > NEW_LIST

SNAPSHOT.wasm is the home's cached Python snapshot (it has the `name` section), MODULE.cwasm the
module the server ran (its symbols are `wasm[0]::function[N]`), MAPS a copy of the server's
/proc/PID/maps, IPS the sampled instruction addresses, CURRENT_LIST the list the server's module
was laid out with: the compiled module's function N is the snapshot's function at the Nth place
of that layout (`hot_first.rs`: the listed functions first, in the list's order, the rest in
their own), so names are found through the same permutation.
"""
import bisect
import collections
import re
import subprocess
import sys


def leb(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def sections(wasm):
    i = 8
    while i < len(wasm):
        sid = wasm[i]
        size, start = leb(wasm, i + 1)
        yield sid, start, start + size
        i = start + size


def shape(wasm):
    """(imported function count, defined function count, [(index, name)] in name-section order)."""
    imported = defined = 0
    names = []
    for sid, start, end in sections(wasm):
        if sid == 2:
            count, p = leb(wasm, start)
            for _ in range(count):
                for _ in range(2):
                    n, p = leb(wasm, p)
                    p += n
                kind = wasm[p]
                p += 1
                if kind == 0:  # a function: its type index
                    imported += 1
                    _, p = leb(wasm, p)
                elif kind in (1, 2):  # a table (its reference type, then limits) or a memory (limits)
                    if kind == 1:
                        p += 1
                    flags = wasm[p]
                    _, p = leb(wasm, p + 1)
                    if flags & 1:
                        _, p = leb(wasm, p)
                elif kind == 3:  # a global: valtype, mutability
                    p += 2
                elif kind == 4:  # a tag: attribute, type index
                    p += 1
                    _, p = leb(wasm, p)
                else:
                    sys.exit(f"import kind {kind} not understood")
        elif sid == 3:
            defined, _ = leb(wasm, start)
        elif sid == 0:
            n, p = leb(wasm, start)
            if wasm[p:p + n] != b"name":
                continue
            p += n
            while p < end:
                sub = wasm[p]
                size, q = leb(wasm, p + 1)
                if sub == 1:
                    count, r = leb(wasm, q)
                    for _ in range(count):
                        index, r = leb(wasm, r)
                        length, r = leb(wasm, r)
                        names.append((index, wasm[r:r + length].decode(errors="replace")))
                        r += length
                p = q + size
    return imported, defined, names


def layout(imported, defined, names, listed):
    """The snapshot's function index at each compiled index (see `hot_first.rs`)."""
    by_name = collections.defaultdict(list)
    for index, name in names:
        by_name[name].append(index)
    placed, order = set(), []
    for name in listed:
        for index in by_name.get(name, []):
            position = index - imported
            if 0 <= position < defined and position not in placed:
                placed.add(position)
                order.append(position)
    if order:
        order += [d for d in range(defined) if d not in placed]
    else:
        order = list(range(defined))
    return list(range(imported)) + [imported + d for d in order]


def main():
    snapshot, cwasm, maps, ips, current = sys.argv[1:6]
    wasm = open(snapshot, "rb").read()
    imported, defined, names = shape(wasm)
    listed = [l.strip() for l in open(current) if l.strip() and not l.startswith("#")]
    original = layout(imported, defined, names, listed)
    name_of = dict(names)

    elf = subprocess.run(["readelf", "-SW", cwasm], capture_output=True, text=True, check=True).stdout
    text_size = int(re.search(r"\] \.text\s+PROGBITS\s+\S+\s+\S+\s+(\S+)", elf).group(1), 16)
    symbols = []
    for line in subprocess.run(["readelf", "-sW", cwasm], capture_output=True, text=True, check=True).stdout.splitlines():
        fields = line.split()
        if len(fields) == 8 and fields[3] == "FUNC":
            m = re.match(r"wasm\[0\]::function\[(\d+)\]", fields[7])
            if m:
                symbols.append((int(fields[1], 16), int(fields[2], 0), int(m.group(1))))
    symbols.sort()
    starts = [s[0] for s in symbols]
    # The module's code: executable mappings exactly as long as its text (page-rounded).
    rounded = (text_size + 4095) // 4096 * 4096
    ranges = []
    for line in open(maps):
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if "x" in fields[1] and hi - lo == rounded:
            ranges.append((lo, hi))
    if not ranges:
        sys.exit("no mapping of the module's code found in the maps")

    counts, total, guest = collections.Counter(), 0, 0
    for line in open(ips):
        ip = int(line.strip(), 16)
        total += 1
        for lo, hi in ranges:
            if lo <= ip < hi:
                k = bisect.bisect_right(starts, ip - lo) - 1
                if k >= 0 and ip - lo < starts[k] + max(symbols[k][1], 1):
                    counts[symbols[k][2]] += 1
                    guest += 1
                break
    print(f"{total} samples, {guest} in the interpreter's code, {len(counts)} functions", file=sys.stderr)
    for compiled_index, _ in counts.most_common():
        print(name_of.get(original[compiled_index], f"function[{original[compiled_index]}]"))


if __name__ == "__main__":
    main()
