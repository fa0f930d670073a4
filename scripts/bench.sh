#!/usr/bin/env bash
# SoulBox's benchmarks: criterion (medians, in target/criterion) and then the report tables
# (p50/p99 and ratios against native CPython, memory per sandbox, all measured in this run).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --locked
./target/release/soulbox runtimes fetch
cargo bench -p soulbox-benches --locked --bench execution --bench sandbox -- --warm-up-time 2 --measurement-time 5
./target/release/report
./target/release/sandbox-report
if [ ! -x target/moto-venv/bin/python ]; then python3 -m venv target/moto-venv; fi
target/moto-venv/bin/pip install --quiet --disable-pip-version-check -r server/tests/python/moto-requirements.txt
./target/release/checkpoint-report
command -v wrk >/dev/null || apt-get install -y wrk
./target/release/http-report
bash scripts/build-images.sh
./target/release/container-report
if [ ! -x target/e2b-venv/bin/python ]; then python3 -m venv target/e2b-venv; fi
target/e2b-venv/bin/pip install --quiet --disable-pip-version-check -r server/tests/python/e2b-requirements.txt
target/e2b-venv/bin/python benches/e2b/e2b_report.py target/release/soulbox
