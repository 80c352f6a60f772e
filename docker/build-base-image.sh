#!/usr/bin/env bash
# Build a stand-in for `python:3.11-slim` from this machine's Debian mirror and load it into
# the Docker daemon at $DOCKER_HOST, for machines that cannot reach Docker Hub.
#
# Debian bookworm's python3 is 3.11, so a minbase bookworm with python3, pip, venv and
# ca-certificates is enough for the kikimimi Dockerfiles (which only need `python3 -m venv`).
# The image also trusts the extra CA certificates this machine trusts (those under
# /usr/local/share/ca-certificates) and carries an /etc/pip.conf that points pip at them,
# so that `pip install` inside a build reaches PyPI the same way the host does.
#
# Cached twice: nothing is done when the image already exists in the daemon, and the root
# file system tarball is kept in $KIKIMIMI_BASE_CACHE so that a wiped daemon re-imports it
# in seconds. FORCE=1 rebuilds from scratch.
#
# Usage: docker/build-base-image.sh [image-tag]   (default: kikimimi/python-standin:3.11-bookworm)
# The tag is the stand-in's own: the Dockerfiles' default is python:3.11-slim pinned by a
# digest, which a local image cannot carry, so builds name the stand-in in BASE_IMAGE.
set -euo pipefail

IMAGE="${1:-kikimimi/python-standin:3.11-bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"
CACHE_DIR="${KIKIMIMI_BASE_CACHE:-/var/cache/kikimimi}"
TARBALL="${CACHE_DIR}/base-${SUITE}-python3-rootfs.tar"
PACKAGES="python3,python3-pip,python3-venv,python-is-python3,ca-certificates"

log() { printf '[base-image] %s\n' "$*" >&2; }

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already present in the daemon; nothing to do (FORCE=1 rebuilds)"
    exit 0
fi

# The first Debian archive URI configured for apt that serves $SUITE (deb822 or one-line
# format). DEBIAN_MIRROR overrides it.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
        [[ -r "$f" ]] || continue
        if [[ "$f" == *.sources ]]; then
            awk -v suite="$SUITE" '
                BEGIN { RS = ""; FS = "\n" }
                {
                    uri = ""; ok = 0
                    for (i = 1; i <= NF; i++) {
                        if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
                        if ($i ~ /^Suites:/ && (" " $i " ") ~ (" " suite " ")) ok = 1
                    }
                    if (ok && uri ~ /debian\/?$/ && uri !~ /security/) { print uri; exit }
                }' "$f"
        else
            awk -v suite="$SUITE" '$1 == "deb" && $0 !~ /security/ {
                    for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { if ($(i + 1) == suite) { print $i; exit } }
                }' "$f"
        fi
    done | head -n 1
}

if [[ "${FORCE:-0}" == 1 || ! -s "$TARBALL" ]]; then
    command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
    [[ "$(id -u)" == 0 ]] || { log "debootstrap needs root"; exit 1; }
    MIRROR="${DEBIAN_MIRROR:-$(debian_mirror)}"
    MIRROR="${MIRROR:-http://deb.debian.org/debian}"
    mkdir -p "$CACHE_DIR"
    ROOTFS="$(mktemp -d "${CACHE_DIR}/rootfs.XXXXXX")"
    trap 'rm -rf "$ROOTFS"' EXIT
    log "debootstrap $SUITE from $MIRROR into $ROOTFS"
    started=$SECONDS
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
        >"${CACHE_DIR}/debootstrap.log" 2>&1 \
        || { tail -n 30 "${CACHE_DIR}/debootstrap.log" >&2; exit 1; }
    log "debootstrap took $((SECONDS - started)) s"

    # Trust what this machine trusts: its local CA certificates, installed the Debian way.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
    fi
    chroot "$ROOTFS" update-ca-certificates >/dev/null

    # pip reaches PyPI with the system bundle (which now holds the local CAs). Local wheel
    # directories and file:// indexes of the host are not carried: they do not exist inside
    # a build.
    cat >"$ROOTFS/etc/pip.conf" <<'EOF'
[global]
cert = /etc/ssl/certs/ca-certificates.crt
default-timeout = 180
disable-pip-version-check = true
EOF
    # Apt sources that work inside the image (same mirror as the host).
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$ROOTFS/etc/apt/sources.list"

    # Slim it like the official image: no apt lists, docs, man pages or caches.
    chroot "$ROOTFS" apt-get clean
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
        "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
        "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache
    find "$ROOTFS/usr/lib/python3" -name __pycache__ -prune -exec rm -rf {} +

    tar -C "$ROOTFS" --numeric-owner -cf "${TARBALL}.tmp" .
    mv "${TARBALL}.tmp" "$TARBALL"
    rm -rf "$ROOTFS"
    trap - EXIT
fi

log "docker import $TARBALL as $IMAGE"
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    --message "stand-in for python:3.11-slim: Debian $SUITE minbase + python3 (built by kikimimi)" \
    "$TARBALL" "$IMAGE" >/dev/null
docker run --rm "$IMAGE" python3 -c 'import sys, ssl; print("[base-image]", sys.version.split()[0], ssl.OPENSSL_VERSION)' >&2
