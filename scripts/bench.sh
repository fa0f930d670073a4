#!/usr/bin/env bash
# SoulBox's benchmarks: criterion (medians, in target/criterion) and then the report tables
# (p50/p99 and ratios against native CPython, memory per sandbox, all measured in this run).
# The reports run on the build that ships, the `dist` profile (link-time optimised: Cargo.toml;
# slower to build than `release`: 14.5-24 minutes for `soulbox` and `peers-report` alone from scratch
# on 2 cores); criterion's benches build cargo's `bench` profile.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile dist --workspace --locked
./target/dist/soulbox runtimes fetch
cargo bench -p soulbox-benches --locked --bench execution --bench sandbox -- --warm-up-time 2 --measurement-time 5
./target/dist/report
./target/dist/sandbox-report
./target/dist/javascript-report
python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: --platform any \
  --implementation py --abi none --python-version 3.15 -d target/test-wheels -r tests/wheels-requirements.txt
./target/dist/network-report
if [ ! -x target/moto-venv/bin/python ]; then python3 -m venv target/moto-venv; fi
target/moto-venv/bin/pip install --quiet --disable-pip-version-check -r server/tests/python/moto-requirements.txt
./target/dist/checkpoint-report
command -v wrk >/dev/null || apt-get install -y wrk
./target/dist/http-report
command -v haproxy >/dev/null || apt-get install -y haproxy
./target/dist/cluster-report
# The peers (Eryx, Monty) from PyPI, pinned, in a Python >= 3.12 virtual environment (pyeryx needs
# it): python3.12 on the PATH, else pyenv's.
if [ ! -x target/peers-venv/bin/python ]; then
  peers_python=""
  for candidate in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
    if "$candidate" --version >/dev/null 2>&1; then peers_python="$candidate"; break; fi
  done
  [ -n "$peers_python" ] || { echo "python3.12 not found: the peers' report needs it (pyeryx)" >&2; exit 1; }
  "$peers_python" -m venv target/peers-venv
fi
target/peers-venv/bin/pip install --quiet --disable-pip-version-check -r benches/peers/requirements.txt
./target/dist/peers-report
bash scripts/build-images.sh
./target/dist/container-report
./target/dist/browser-report
if [ ! -x target/e2b-venv/bin/python ]; then python3 -m venv target/e2b-venv; fi
target/e2b-venv/bin/pip install --quiet --disable-pip-version-check -r server/tests/python/e2b-requirements.txt
target/e2b-venv/bin/python benches/e2b/e2b_report.py target/dist/soulbox
