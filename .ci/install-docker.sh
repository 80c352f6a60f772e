#!/usr/bin/env bash
# Install what `make test-containers` needs from Debian: the Docker engine (docker.io:
# dockerd, containerd, runc) and debootstrap (for the stand-in base image). No-op when
# both are present. Needs root (apt-get).
set -euo pipefail

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
((${#missing[@]})) || exit 0

if [[ "$(id -u)" != 0 ]]; then
    echo "install-docker: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "install-docker: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# policy-rc.d may refuse to start the packaged service; .ci/dockerd.sh runs its own daemon.
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
