#!/usr/bin/env bash
# Debian packages `make test` needs: flite speaks the English test sentences that the real
# engine's tests recognise. Installs them when missing and running as root; otherwise says
# what to install. No-op when present.
set -euo pipefail

command -v flite >/dev/null && exit 0
if [[ "$(id -u)" != 0 ]]; then
    echo "make test needs flite (English test speech): sudo apt-get install flite" >&2
    exit 1
fi
echo "install-test-deps: apt-get install flite" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends flite >/dev/null
