#!/usr/bin/env bash
# Runs deploy/compose/compose.yaml for real: PostgreSQL, three SoulBox nodes from the local
# server image (scripts/build-server-image.sh) and HAProxy, on a port of its own, then checks
# the cluster through the proxy: sandboxes spread over the three nodes, cells reach their
# owners, operators' paths refused from outside, a node stopped and started again (drained:
# its sandbox paused; while it is away, the other nodes keep the sandbox for it, 503 rather
# than lost; then adopted back with its state) and a node's process killed (its sandbox,
# never checkpointed, reported lost: 410). Everything it started is removed at the end.
#
# Without a registry, `postgres:15` and `haproxy:2.6` are built from deploy/compose/standins/
# (Debian's PostgreSQL 15 and HAProxy 2.6, the official images' interface) when the engine
# does not have them; an engine that has the official images uses those.
# Needs Docker with Compose (`docker compose`, or Debian's `docker-compose`), the base image
# (scripts/build-images.sh), the release binary and its runtimes home.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "compose-check: $*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*" >&2; }
if docker compose version >/dev/null 2>&1; then compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then compose=(docker-compose)
else fail "no Docker Compose: apt-get install docker-compose"; fi

step "server image"
bash scripts/build-server-image.sh
for image in postgres:15 haproxy:2.6; do
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    step "stand-in $image (deploy/compose/standins/${image%%:*})"
    docker build -q -t "$image" "deploy/compose/standins/${image%%:*}" >/dev/null
  fi
done

project="soulbox-check-$$"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run() { SOULBOX_PORT=$port "${compose[@]}" -p "$project" -f deploy/compose/compose.yaml "$@"; }
trap 'run logs --no-color > "target/compose-check.log" 2>&1 || true; run down -v >/dev/null 2>&1 || true' EXIT

step "up (project $project, port $port)"
run up -d
for _ in $(seq 1 180); do
  curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  sleep 1
done
curl -fs "http://127.0.0.1:$port/ready" >/dev/null || fail "the proxy never answered /ready (logs: target/compose-check.log)"
key=$(run run --rm -T soulbox-1 keys create --tenant compose-check 2>/dev/null | grep -o 'sbk_[0-9a-f]*' | head -n 1)
[ -n "$key" ] || fail "no API key was made"

step "checks through the proxy (scripts/compose_check.py)"
check() { python3 scripts/compose_check.py "http://127.0.0.1:$port" "$key" "$@"; }
sandboxes=$(check spread)
echo "$sandboxes"
on() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$sandboxes" "$1"; }

step "soulbox-2 stopped (SIGTERM: drained, its sandbox paused), kept for it by the others, started, adopted back"
run stop soulbox-2
check awaited "$(on soulbox-2)"
run start soulbox-2
check kept "$(on soulbox-2)" soulbox-2 "x + 1" 21

step "soulbox-3's process killed (SIGKILL; Docker starts it again)"
kill -9 "$(docker inspect -f '{{.State.Pid}}' "$(run ps -q soulbox-3)")"
check lost "$(on soulbox-3)"
echo "compose-check: all checks passed"
