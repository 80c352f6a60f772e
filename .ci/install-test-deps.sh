#!/usr/bin/env bash
# Debian packages `make test` needs, one block each. Installs them when missing and running
# as root; otherwise says what to install. No-op when present.
set -euo pipefail
source "$(dirname "$0")/apt.sh"

# flite speaks the English test sentences that the real engines' tests recognise.
if ! command -v flite >/dev/null; then
    apt_install "make test needs flite (English test speech)" flite
fi

# chromium runs the demo page's browser tests (tests/browser, driven by Playwright, which
# never downloads a browser of its own); a Japanese font lets its screenshots show the text.
if ! command -v chromium >/dev/null || ! fc-list :lang=ja 2>/dev/null | grep -q .; then
    apt_install "make test needs chromium and a Japanese font (browser tests)" \
        chromium fonts-ipafont-gothic
fi

# Japanese test speech: Open JTalk and the Mei voice (its own script, cached in .cache/tts).
bash "$(dirname "$0")/install-japanese-tts.sh"
