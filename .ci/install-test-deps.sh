#!/usr/bin/env bash
# Debian packages `make test` needs: flite speaks the English test sentences that the real
# engine's tests recognise, Open JTalk the Japanese ones. Installs them when missing and
# running as root; otherwise says what to install. No-op when present.
set -euo pipefail

if ! command -v flite >/dev/null; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "make test needs flite (English test speech): sudo apt-get install flite" >&2
        exit 1
    fi
    echo "install-test-deps: apt-get install flite" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends flite >/dev/null
fi

# Japanese test speech: Open JTalk and the Mei voice (its own script, cached in .cache/tts).
bash "$(dirname "$0")/install-japanese-tts.sh"
