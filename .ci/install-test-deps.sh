#!/usr/bin/env bash
# Debian packages `make test` needs, one block each. Installs them when missing and running
# as root; otherwise says what to install. No-op when present.
set -euo pipefail

# flite speaks the English test sentences that the real engines' tests recognise.
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

# chromium runs the demo page's browser tests (tests/browser, driven by Playwright, which
# never downloads a browser of its own); a Japanese font lets its screenshots show the text.
if ! command -v chromium >/dev/null || ! fc-list :lang=ja 2>/dev/null | grep -q .; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "make test needs chromium and a Japanese font (browser tests):" \
            "sudo apt-get install chromium fonts-ipafont-gothic" >&2
        exit 1
    fi
    echo "install-test-deps: apt-get install chromium fonts-ipafont-gothic" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends chromium fonts-ipafont-gothic >/dev/null
fi

# Japanese test speech: Open JTalk and the Mei voice (its own script, cached in .cache/tts).
bash "$(dirname "$0")/install-japanese-tts.sh"
