#!/usr/bin/env bash
# SoulBox's whole test suite, on a fresh machine or a warm one:
#   formatting and lints (-D warnings), a release build, the interpreters fetched and compiled
#   (skipped when already done), the test Python (the official MCP SDK, pinned), the official
#   E2B SDKs (pinned), moto (an
#   S3-compatible server, pinned), a PostgreSQL server on loopback, the container images (built locally, no registry), then every unit,
#   integration, CLI and server test against real wasmtime and the real Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# rustfmt and clippy ship with the toolchain; a toolchain without them (and no network to add
# them) skips these two checks loudly rather than failing the suite.
step "rustfmt"
if cargo fmt --version >/dev/null 2>&1; then cargo fmt --all --check; else echo "WARNING: rustfmt not installed; skipped" >&2; fi

step "clippy (-D warnings)"
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --release --workspace --all-targets --locked -- -D warnings
else
  echo "WARNING: clippy not installed; skipped" >&2
fi

step "cargo doc (the public crates, warnings as errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --release --no-deps --locked \
  -p soulbox-engine -p soulbox-host-api -p soulbox-runtimes-wasm -p soulbox-fallback

step "build"
cargo build --release --workspace --locked

step "runtimes (pip download, verify, compile once)"
./target/release/soulbox runtimes fetch

step "test Python (server/tests/python/requirements.txt)"
if [ ! -x target/test-venv/bin/python ]; then python3 -m venv target/test-venv; fi
target/test-venv/bin/pip install --quiet --disable-pip-version-check -r server/tests/python/requirements.txt

step "fuzzer (server/tests/python/fuzz-requirements.txt: Schemathesis, for the API fuzz run)"
if [ ! -x target/fuzz-venv/bin/python ]; then python3 -m venv target/fuzz-venv; fi
target/fuzz-venv/bin/pip install --quiet --disable-pip-version-check -r server/tests/python/fuzz-requirements.txt

step "E2B SDKs (server/tests/python/e2b-requirements.txt: the official e2b and e2b-code-interpreter, pinned)"
if [ ! -x target/e2b-venv/bin/python ]; then python3 -m venv target/e2b-venv; fi
target/e2b-venv/bin/pip install --quiet --disable-pip-version-check -r server/tests/python/e2b-requirements.txt

step "moto (server/tests/python/moto-requirements.txt: an S3-compatible server, for the object store tests)"
if [ ! -x target/moto-venv/bin/python ]; then python3 -m venv target/moto-venv; fi
target/moto-venv/bin/pip install --quiet --disable-pip-version-check -r server/tests/python/moto-requirements.txt

step "test wheels (tests/wheels-requirements.txt: pure-Python wheels the package tests install, pinned)"
python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: --platform any \
  --implementation py --abi none --python-version 3.15 -d target/test-wheels -r tests/wheels-requirements.txt

step "PostgreSQL on loopback (scripts/postgres.sh), for the database tests"
if [ -z "${SOULBOX_TEST_POSTGRES_URL:-}" ]; then
  SOULBOX_TEST_POSTGRES_URL=$(bash scripts/postgres.sh)
fi
export SOULBOX_TEST_POSTGRES_URL

step "container images (scripts/build-images.sh: a Debian root filesystem, then the runtimes; kept when up to date)"
bash scripts/build-images.sh

step "tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '; [0-9]+ failed' "$log" | grep -Eo '[0-9]+' | awk '{s += $1} END {print s + 0}')
echo
echo "summary: ${passed} passed, ${failed} failed"
exit "$status"
