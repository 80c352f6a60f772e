#!/usr/bin/env bash
# Run a private Docker engine (Debian's docker.io) for CI: its own socket, data root and exec
# root, so it never touches a daemon the machine may already have.
#
#   .ci/dockerd.sh start   start it in the background (no-op if ours is already up); prints
#                          `export DOCKER_HOST=...` for eval
#   .ci/dockerd.sh stop    stop it by the PID in its pidfile, and wait for it to exit
#   .ci/dockerd.sh status  exit 0 when it answers
#
# Bridge networking and iptables work in this sandbox (checked on Debian bookworm, docker.io
# 20.10); set KIKIMIMI_DOCKERD_ARGS="--iptables=false --bridge=none" on a machine where
# they do not (compose then needs host networking).
set -euo pipefail

RUN_DIR="${KIKIMIMI_DOCKER_RUN:-/tmp/kikimimi-docker}"
DATA_ROOT="${KIKIMIMI_DOCKER_DATA:-/var/lib/kikimimi-docker}"
SOCK="$RUN_DIR/docker.sock"
PIDFILE="$RUN_DIR/dockerd.pid"
LOG="$RUN_DIR/dockerd.log"
export DOCKER_HOST="unix://$SOCK"

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

ours_running() {
    [[ -s "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

start() {
    if ours_running && answers; then
        echo "export DOCKER_HOST=$DOCKER_HOST"
        return 0
    fi
    command -v dockerd >/dev/null || {
        echo "dockerd not found: apt-get install docker.io" >&2
        return 1
    }
    mkdir -p "$RUN_DIR" "$DATA_ROOT"
    rm -f "$SOCK" "$PIDFILE"
    # shellcheck disable=SC2086  # KIKIMIMI_DOCKERD_ARGS is a list of flags
    setsid dockerd \
        --host "$DOCKER_HOST" \
        --data-root "$DATA_ROOT" \
        --exec-root "$RUN_DIR/exec" \
        --pidfile "$PIDFILE" \
        --log-level warn \
        ${KIKIMIMI_DOCKERD_ARGS:-} \
        >"$LOG" 2>&1 </dev/null &
    local i
    for i in $(seq 1 60); do
        if answers; then
            echo "export DOCKER_HOST=$DOCKER_HOST"
            echo "dockerd: up after ${i}x0.5 s (pid $(cat "$PIDFILE"), log $LOG)" >&2
            return 0
        fi
        sleep 0.5
    done
    echo "dockerd did not answer within 30 s; last log lines:" >&2
    tail -n 30 "$LOG" >&2
    return 1
}

stop() {
    ours_running || return 0
    local pid
    pid="$(cat "$PIDFILE")"
    kill -TERM "$pid"
    local i
    for i in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || { echo "dockerd: stopped (pid $pid)" >&2; return 0; }
        sleep 0.5
    done
    echo "dockerd: pid $pid ignored SIGTERM for 30 s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) ours_running && answers ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
