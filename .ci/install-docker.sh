#!/usr/bin/env bash
# Install what `make test-containers` needs from Debian: the Docker engine (docker.io:
# dockerd, containerd, runc) and debootstrap (for the stand-in base image). No-op when
# both are present. Needs root (apt-get).
set -euo pipefail
source "$(dirname "$0")/apt.sh"

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
((${#missing[@]})) || exit 0

# policy-rc.d may refuse to start the packaged service; .ci/dockerd.sh runs its own daemon.
apt_install "make test-containers needs ${missing[*]}" "${missing[@]}"
