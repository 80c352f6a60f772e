#!/usr/bin/env bash
# Japanese test speech for `make test` (run by .ci/install-test-deps.sh): Debian's Open JTalk
# with its NAIST dictionary, and the HTS voice "Mei" (mei_normal.htsvoice, CC BY 3.0, Nagoya
# Institute of Technology) taken from the pyopenjtalk source package on PyPI, checked against
# its SHA-256 and kept in .cache/tts/ (git-ignored). Idempotent: a no-op when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/apt.sh

PYOPENJTALK_VERSION=0.4.1
VOICE_SHA256=f3be49a6838904a6c218790b64e07c3e83c1886e995dca284b413caab19184de
VOICE_DIR=.cache/tts
VOICE="$VOICE_DIR/mei_normal-$VOICE_SHA256.htsvoice"
PYTHON="${PYTHON:-.venv/bin/python}"

if ! command -v open_jtalk >/dev/null || [[ ! -d /var/lib/mecab/dic/open-jtalk/naist-jdic ]]; then
    apt_install "make test needs Open JTalk (Japanese test speech)" \
        open-jtalk open-jtalk-mecab-naist-jdic
fi

[[ -f "$VOICE" ]] && exit 0
echo "install-japanese-tts: mei_normal.htsvoice from the pyopenjtalk $PYOPENJTALK_VERSION sdist" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# --no-binary for pyopenjtalk only: its build requirements may come as wheels.
"$PYTHON" -m pip download -q --no-deps --no-binary pyopenjtalk \
    "pyopenjtalk==$PYOPENJTALK_VERSION" -d "$work" 2>&1 | grep -v '^WARNING' >&2 || true
sdist="$work/pyopenjtalk-$PYOPENJTALK_VERSION.tar.gz"
[[ -f "$sdist" ]] || { echo "install-japanese-tts: pip download of pyopenjtalk failed" >&2; exit 1; }
inner="pyopenjtalk-$PYOPENJTALK_VERSION/pyopenjtalk/htsvoice"
tar -xzf "$sdist" -C "$work" "$inner/mei_normal.htsvoice" "$inner/LICENSE_mei_normal.htsvoice"
echo "$VOICE_SHA256  $work/$inner/mei_normal.htsvoice" | sha256sum --check --quiet
mkdir -p "$VOICE_DIR"
cp "$work/$inner/LICENSE_mei_normal.htsvoice" "$VOICE_DIR/LICENSE_mei_normal.htsvoice"
cp "$work/$inner/mei_normal.htsvoice" "$VOICE.tmp"
mv "$VOICE.tmp" "$VOICE"  # atomic: a half-copied voice is never taken for the real one
