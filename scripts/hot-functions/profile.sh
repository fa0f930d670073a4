#!/usr/bin/env bash
# Profiles which functions typical requests run, hottest first, and writes the two lists that
# lay them out first: the Python interpreter's (`runtimes-wasm/src/python/hot-functions.txt`,
# see `runtimes-wasm/src/hot_first.rs`) and the `soulbox` binary's (`server/hot-symbols.txt`,
# see `server/build.rs`).
#
#   scripts/hot-functions/profile.sh [SECONDS]      (60 by default)
#
# Starts `target/dist/soulbox serve --dev` (or `$SOULBOX_BINARY`: profile the build the list is
# for, since inlining differs between profiles) on a home of its own, the installed runtimes
# linked in; samples it with `perf record -e cpu-clock` while `workload.py` runs typical snippets
# as fresh executions and session cells (a third of the rounds with 5 ms gaps); names the interpreter's sampled functions
# through the snapshot's `name` section and the binary's by its symbols. Needs `perf` (Debian's
# linux-perf) and `soulbox runtimes fetch` done. The interpreter's list the build had is used to
# undo its layout, so a profile of a laid-out build is right; the binary's is rebuilt from scratch.
# Profile a build linked with a list (any; the committed one): the build linked with none had
# other hashes in half its symbol names, while builds linked with different lists had the same.
# Then rebuild (`build.rs` relinks when the list changes) and commit both lists.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
binary="$(realpath "${SOULBOX_BINARY:-target/dist/soulbox}")"
list=runtimes-wasm/src/python/hot-functions.txt
symbols=server/hot-symbols.txt
runtimes="${SOULBOX_HOME:-$HOME/.local/share/soulbox}/runtimes"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/home/cache"
ln -s "$(realpath "$runtimes")" "$work/home/runtimes"
# Snapshots do not depend on either list: reuse the installed home's, if built.
snapshots="$(dirname "$runtimes")/cache/snapshots"
mkdir -p "$work/home/cache/snapshots"
cp -l "$snapshots"/* "$work/home/cache/snapshots/" 2>/dev/null || true
port=7987
SOULBOX_HOME="$work/home" SOULBOX_LOG=warn "$binary" serve --dev --addr "127.0.0.1:$port" \
    --set auth.requests_per_second=1000000 --set auth.burst=1000000 > "$work/server.log" 2>&1 &
server=$!
until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do
    kill -0 "$server" || { cat "$work/server.log"; exit 1; }
    sleep 1
done
python3 scripts/hot-functions/workload.py "$port" 5 > /dev/null  # warm up: every module compiled and loaded
perf record -q -e cpu-clock -F 15000 -p "$server" -o "$work/perf.data" -- sleep "$((seconds + 2))" &
recorder=$!
python3 scripts/hot-functions/workload.py "$port" "$seconds"
wait "$recorder"
cp "/proc/$server/maps" "$work/maps"
perf script -i "$work/perf.data" -F ip,sym,dso --no-demangle 2> /dev/null > "$work/samples"
awk '{print $1}' "$work/samples" > "$work/ips"
module="$(ls "$work"/home/cache/modules/python-plain-*.cwasm)"
snapshot="$(ls "$work"/home/cache/snapshots/python-plain-*.wasm)"
{
    sed -n '/^#/p' "$list"
    python3 scripts/hot-functions/resolve.py "$snapshot" "$module" "$work/maps" "$work/ips" "$list"
} > "$work/list"
mv "$work/list" "$list"
echo "wrote $list ($(grep -vc '^#' "$list") functions)"
{
    sed -n '/^#/p' "$symbols"
    awk -v dso="($binary)" '$NF == dso && $2 != "[unknown]" {print $2}' "$work/samples" | sort | uniq -c | sort -k1,1nr -k2 | awk '{print $2}'
} > "$work/symbols"
mv "$work/symbols" "$symbols"
echo "wrote $symbols ($(grep -vc '^#' "$symbols") functions)"
