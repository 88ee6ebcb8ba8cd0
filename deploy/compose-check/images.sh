#!/usr/bin/env bash
# Builds, with Podman and Debian's packages only, every image docker-compose.yml runs:
#   a Debian base with Python 3.11 standing in for python:3.11-slim (mmdebstrap → podman import),
#   stand-ins for postgres, redis and eclipse-mosquitto from Debian's packages,
#   and smokehouse itself from the real Dockerfile (its base image is a build argument).
# For machines with no image registry; `make compose-check` runs it. Prints the images' names.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
prefix="${IMAGE_PREFIX:-localhost/smokehouse-check}"
base="$prefix/python:3.11-$suite"

if ! podman image exists "$base" || [ -n "${REBUILD_BASE:-}" ]; then
  rootfs="$(mktemp -d)/rootfs.tar"
  # python:3.11-slim in spirit: Python 3.11 with pip and venv, CA certificates, C.UTF-8. The
  # hook adds this machine's own CAs (a TLS-inspecting egress proxy's) and lets pip install
  # into the system Python, as the official image's does.
  mmdebstrap --quiet --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    --customize-hook='cp -r /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/" 2>/dev/null || true' \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    --customize-hook='ln -sf /usr/bin/python3 "$1/usr/local/bin/python"; ln -sf /usr/bin/pip3 "$1/usr/local/bin/pip"' \
    "$suite" "$rootfs" "$mirror"
  # SSL_CERT_FILE: uv reads its roots from there (it ignores the system store otherwise).
  podman import --quiet \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    "$rootfs" "$base" >/dev/null
  rm -rf "$(dirname "$rootfs")"
fi
echo "$base"

for service in postgres redis mosquitto; do
  podman build --quiet --format docker --build-arg "BASE=$base" -t "$prefix/$service:$suite" \
    -f "$here/Containerfile.$service" "$here" >/dev/null
  echo "$prefix/$service:$suite"
done

podman build --quiet --format docker --build-arg "PYTHON_IMAGE=$base" -t smokehouse:latest "$root" >/dev/null
echo smokehouse:latest
