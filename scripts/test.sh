#!/usr/bin/env bash
# SoulBox's whole test suite, on a fresh machine or a warm one:
#   formatting and lints (-D warnings), a release build, the interpreters fetched and compiled
#   (skipped when already done); beside those, from the start: the test Python (the official MCP
#   SDK, pinned), the official E2B SDKs (pinned), moto (an S3-compatible server, pinned), a
#   PostgreSQL server on loopback, HAProxy (Debian's), the container images (built locally, no registry); then every
#   unit, integration, CLI and server test against real wasmtime and the real Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { printf '\n==> [%ds] %s\n' "$((SECONDS - started))" "$*" >&2; }

# What the tests need besides the Rust build is made beside it, from the start: the Python
# environments and wheels (pip), then PostgreSQL and the container images (apt and Docker: one
# after the other, since both may install Debian packages). Each job logs to target/prepare/;
# the tests wait for them below. Measured cold on 2 cores, run one after another: 260 s of pip
# and 465 s of images, now beside the compile instead of after it.
prepare=target/prepare
mkdir -p "$prepare"
python_envs() {
  venv() { if [ ! -x "target/$1/bin/python" ]; then python3 -m venv "target/$1"; fi
           "target/$1/bin/pip" install --quiet --disable-pip-version-check -r "$2"; }
  step "test Python (server/tests/python/requirements.txt)"
  venv test-venv server/tests/python/requirements.txt
  step "fuzzer (server/tests/python/fuzz-requirements.txt: Schemathesis, for the API fuzz run)"
  venv fuzz-venv server/tests/python/fuzz-requirements.txt
  step "E2B SDKs (server/tests/python/e2b-requirements.txt: the official e2b and e2b-code-interpreter, pinned)"
  venv e2b-venv server/tests/python/e2b-requirements.txt
  step "moto (server/tests/python/moto-requirements.txt: an S3-compatible server, for the object store tests)"
  venv moto-venv server/tests/python/moto-requirements.txt
  step "deployment validator (server/tests/python/deploy-requirements.txt: kubernetes-validate, pinned, for deploy/)"
  venv deploy-venv server/tests/python/deploy-requirements.txt
  step "test wheels (tests/wheels-requirements.txt: pure-Python wheels the package tests install, pinned)"
  python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: --platform any \
    --implementation py --abi none --python-version 3.15 -d target/test-wheels -r tests/wheels-requirements.txt
}
services() {
  step "PostgreSQL on loopback (scripts/postgres.sh), for the database tests"
  if [ -n "${SOULBOX_TEST_POSTGRES_URL:-}" ]; then echo "$SOULBOX_TEST_POSTGRES_URL"; else bash scripts/postgres.sh; fi \
    > "$prepare/postgres-url"
  step "HAProxy (Debian's package), for the cluster tests (deploy/haproxy/haproxy.cfg in front of three nodes)"
  if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy \
      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy; }
  fi
  step "Docker Compose (Debian's docker-compose unless the engine has \`docker compose\`), for scripts/compose-check.sh"
  if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose \
      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose; }
  fi
  step "container images (scripts/build-images.sh: a Debian root filesystem, then the runtimes; kept when up to date)"
  bash scripts/build-images.sh
}
declare -A jobs
for job in python_envs services; do
  ( set -euo pipefail; "$job" ) > "$prepare/$job.log" 2>&1 &
  jobs[$job]=$!
done
# A job still running when this script stops (a failed lint, say) is stopped with it.
stop_tree() { local child; for child in $(pgrep -P "$1"); do stop_tree "$child"; done; kill "$1" 2>/dev/null || true; }
trap 'for pid in "${jobs[@]}"; do stop_tree "$pid"; done' EXIT

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

# The test build: every crate with the features its tests unify (a plain `cargo build` resolves
# dev-dependencies' features apart, so the test step would compile a dozen crates, the
# runtimes among them, a second time). It makes target/release/soulbox too.
step "build (the tests' build, target/release/soulbox included)"
cargo test --release --workspace --locked --no-run

step "runtimes (pip download, verify, compile once)"
./target/release/soulbox runtimes fetch

for job in python_envs services; do
  step "waiting for $job (its log: $prepare/$job.log)"
  if wait "${jobs[$job]}"; then status=0; else status=$?; fi
  cat "$prepare/$job.log" >&2
  if [ "$status" != 0 ]; then echo "$job failed with status $status" >&2; exit "$status"; fi
done
trap - EXIT
SOULBOX_TEST_POSTGRES_URL=$(cat "$prepare/postgres-url")
export SOULBOX_TEST_POSTGRES_URL

step "tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# Every test binary runs even after one fails, so a red run lists every failure at once.
cargo test --release --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')
failed=$(grep -Eo '; [0-9]+ failed' "$log" | grep -Eo '[0-9]+' | awk '{s += $1} END {print s + 0}')

# After the tests, not beside them: its nodes' start-up would slow the timed parts of theirs.
step "Compose (scripts/compose-check.sh: deploy/compose/compose.yaml run for real, three nodes)"
if bash scripts/compose-check.sh; then compose="passed"; else compose="FAILED"; status=1; fi
echo
echo "summary: ${passed} passed, ${failed} failed; Compose check ${compose}"
exit "$status"
