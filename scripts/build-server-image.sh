#!/usr/bin/env bash
# Builds SoulBox's server image locally, without a registry (idempotent: an image whose recipe
# is unchanged is kept):
#   soulbox/server:dev   FROM soulbox/base:bookworm (scripts/build-images.sh): the binary
#                        at /usr/local/bin/soulbox and the runtimes home (runtimes/ and
#                        the compiled modules, cache/modules/) at /opt/soulbox, read-only, run
#                        as uid 10001 (deploy/image/Dockerfile; deploy/README.md)
# Needs the binary, $SOULBOX_BINARY, else target/release/soulbox (`cargo build --release`; for
# production, `cargo build --profile dist` and SOULBOX_BINARY=target/dist/soulbox: the README,
# "The two commands"), and a home whose modules that binary compiled (`soulbox runtimes
# fetch`, then one `soulbox run`): $SOULBOX_HOME, else ~/.local/share/soulbox (the binary's own
# default). The image carries a `soulbox.recipe`
# label: the SHA-256 of what built it (the Dockerfile, this script, the base image, the binary
# and the home's file list, sizes and times). After a build, the image runs `print(1+1)` and
# must print 2, so a home the binary would have to recompile (its modules are read-only in the
# image) fails here rather than in a pod.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=soulbox/base:bookworm
SERVER=${SERVER_IMAGE:-soulbox/server:dev}
BINARY=${SOULBOX_BINARY:-target/release/soulbox}
SOULBOX_HOME=${SOULBOX_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/soulbox}

step() { printf '\n==> %s\n' "$*" >&2; }
fail() { echo "build-server-image: $*" >&2; exit 1; }
recipe_of() { docker image inspect --format '{{ index .Config.Labels "soulbox.recipe" }}' "$1" 2>/dev/null || true; }

docker info >/dev/null 2>&1 || fail "the Docker engine is not reachable"
docker image inspect "$BASE" >/dev/null 2>&1 \
  || fail "the base image $BASE is missing: build it with scripts/build-images.sh"
[ -x "$BINARY" ] || fail "$BINARY is missing: cargo build --release"
[ -d "$SOULBOX_HOME/runtimes" ] || fail "no runtimes in $SOULBOX_HOME: $BINARY runtimes fetch"
compgen -G "$SOULBOX_HOME/cache/modules/*.cwasm" >/dev/null \
  || fail "no compiled modules in $SOULBOX_HOME/cache/modules: run $BINARY run -e 'print(1)' once"

listing() { (cd "$SOULBOX_HOME" && find runtimes cache/modules -printf '%p %y %s %T@\n' | LC_ALL=C sort); }
recipe=$( (cat deploy/image/Dockerfile scripts/build-server-image.sh
           docker image inspect --format '{{.Id}}' "$BASE"
           sha256sum < "$BINARY"
           listing) | sha256sum | cut -c1-64)
if [ "$(recipe_of "$SERVER")" = "$recipe" ]; then
  step "server image $SERVER is up to date"
else
  step "server image $SERVER: docker build FROM $BASE"
  # The build context: the Dockerfile, the binary and the home's runtimes and compiled modules
  # (copied with their times; the modules' checksum stamps record more than times, so the server
  # hashes each module once per start in the image rather than compiling it).
  context=$(mktemp -d "${TMPDIR:-/tmp}/soulbox-server-image.XXXXXX")
  trap 'chmod -R u+w "$context" 2>/dev/null; rm -rf "$context"' EXIT
  cp deploy/image/Dockerfile "$context/"
  cp "$BINARY" "$context/soulbox"
  chmod 0755 "$context/soulbox"
  mkdir -p "$context/home/cache"
  cp -a "$SOULBOX_HOME/runtimes" "$context/home/"
  cp -a "$SOULBOX_HOME/cache/modules" "$context/home/cache/"
  # Read-only in the image: directories 0555, files 0444 (COPY keeps the modes).
  find "$context/home" -type d -exec chmod 0555 {} +
  find "$context/home" -type f -exec chmod 0444 {} +
  DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE=$BASE" --label "soulbox.recipe=$recipe" \
    -t "$SERVER" "$context" >/dev/null
  chmod -R u+w "$context"
  rm -rf "$context"
  trap - EXIT
  step "server image $SERVER: smoke test (docker run --rm $SERVER run -e 'print(1+1)')"
  # A failed image is removed, so the next run builds it again.
  if ! out=$(docker run --rm "$SERVER" run -e 'print(1+1)') || [ "$out" != 2 ]; then
    docker image rm "$SERVER" >/dev/null
    fail "$SERVER failed its smoke test (print(1+1) printed: ${out:-nothing}): removed"
  fi
fi
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "$SERVER" >&2
