#!/usr/bin/env bash
# Builds SoulBox's container images locally, without a registry (idempotent: an image whose
# recipe is unchanged is kept):
#   soulbox/base:bookworm     a minimal Debian root filesystem (mmdebstrap), `docker import`ed
#   soulbox/runtime:bookworm  FROM the base: shells, compilers, interpreters, Chromium, fonts,
#                             Playwright for Python using that Chromium (fallback/image/:
#                             its Dockerfile and scripts, through `docker build`)
# Each image carries a `soulbox.recipe` label: the SHA-256 of what built it.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=soulbox/base:bookworm
RUNTIME=soulbox/runtime:bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}

step() { printf '\n==> %s\n' "$*" >&2; }
recipe_of() { docker image inspect --format '{{ index .Config.Labels "soulbox.recipe" }}' "$1" 2>/dev/null || true; }

docker info >/dev/null 2>&1 || { echo "build-images: the Docker engine is not reachable" >&2; exit 1; }

base_recipe=$(printf '%s\n' "bookworm minbase eatmydata $MIRROR $SECURITY_MIRROR v1" | sha256sum | cut -c1-64)
if [ "$(recipe_of "$BASE")" = "$base_recipe" ]; then
  step "base image $BASE is up to date"
else
  step "base image $BASE: Debian bookworm root filesystem (mmdebstrap), then docker import"
  if ! command -v mmdebstrap >/dev/null; then
    # Stale package lists on a fresh machine: refresh them and try again.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >&2; }
  fi
  # On tmpfs when there is room: several times faster than on disk.
  scratch=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}" )/soulbox-base.XXXXXX")
  trap 'rm -rf "$scratch"' EXIT
  TMPDIR=$scratch mmdebstrap --variant=minbase --mode=root --format=tar \
    --include=eatmydata \
    --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Languages "none"' \
    --customize-hook='printf "%s\n" "path-exclude=/usr/share/man/*" "path-exclude=/usr/share/info/*" "path-exclude=/usr/share/doc/*" "path-include=/usr/share/doc/*/copyright" "path-exclude=/usr/share/locale/*" > "$1/etc/dpkg/dpkg.cfg.d/01-nodoc"' \
    --customize-hook='rm -rf "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/usr/share/locale/*; find "$1"/usr/share/doc -type f ! -name copyright -delete; mkdir -p "$1"/usr/share/man/man1' \
    bookworm "$scratch/base.tar" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY_MIRROR bookworm-security main"
  docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL soulbox.recipe=$base_recipe" \
    --change 'CMD ["bash"]' \
    "$scratch/base.tar" "$BASE" >/dev/null
  rm -rf "$scratch"
  trap - EXIT
fi

runtime_recipe=$( (echo "$base_recipe"; cat fallback/image/Dockerfile fallback/image/*.py fallback/image/*.txt) | sha256sum | cut -c1-64)
if [ "$(recipe_of "$RUNTIME")" = "$runtime_recipe" ]; then
  step "runtime image $RUNTIME is up to date"
else
  step "runtime image $RUNTIME: docker build FROM $BASE (a few minutes)"
  # The build context: fallback/image plus the Playwright wheels, downloaded here (the host's
  # pip, with the host's certificates) for the image's CPython 3.11 on x86-64.
  context=$(mktemp -d "${TMPDIR:-/tmp}/soulbox-image.XXXXXX")
  trap 'rm -rf "$context"' EXIT
  cp -r fallback/image/. "$context/"
  python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    -d "$context/wheels" -r fallback/image/playwright-requirements.txt
  DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE=$BASE" --label "soulbox.recipe=$runtime_recipe" \
    -t "$RUNTIME" "$context" >/dev/null
  rm -rf "$context"
  trap - EXIT
fi
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^soulbox/' >&2
