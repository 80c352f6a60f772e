# Built from the repository root: docker build -f docker/intermediate.Dockerfile .
# BASE_IMAGE must provide python3 with venv. The default pins python:3.11-slim by digest
# (docs/deploy.md, "Images": the value and how to move it); CI, which cannot reach Docker
# Hub, passes the stand-in that docker/build-base-image.sh makes from Debian bookworm.
ARG BASE_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# ---- builder: a venv holding the project and its pinned dependencies ------------------
# This stage is the same in every kikimimi Dockerfile, so its layers are built once and
# shared by all images.
FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# pyflac publishes only a source distribution for Linux, so the builder needs a C compiler
# and the Python headers (the official image has the headers; Debian's python3 needs
# python3-dev). Unpinned apt versions: the base image's release pins them, and this stage is
# thrown away. $pkgs is a word list on purpose.
# hadolint ignore=DL3008,SC2086
RUN pkgs="gcc libc6-dev"     && { python3 -c "import pathlib, sys, sysconfig; sys.exit(not pathlib.Path(sysconfig.get_path('include'), 'Python.h').exists())"          || pkgs="$pkgs python3-dev"; }     && apt-get update     && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs     && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
WORKDIR /src
# Third-party dependencies first, each file checked against its hash in the lock (pip's
# hash-checking mode; `make lock` writes the locks), in a layer reused until a lock changes:
# requirements.lock, the runtime set, is installed. requirements-engine.lock (the runtime set
# plus the `engine` extra: faster-whisper, pocketsphinx, the Whisper model's packages) is only
# downloaded, its hashes checked: the engine image alone installs it (its engine-builder
# stage), so that no other image carries CTranslate2, ONNX Runtime or PyAV. Fetched here,
# before the code, so that a change to the code does not fetch it again.
# The build backends come first, from their lock too (requirements-build.lock), and pip
# builds pyFLAC's sdist and the project with them (--no-build-isolation) rather than with
# build dependencies of its own fetching, which no hash would check.
COPY requirements-build.lock requirements.lock requirements-engine.lock ./
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements-build.lock \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-build-isolation \
        -r requirements.lock \
    && /opt/venv/bin/pip download --no-cache-dir --require-hashes --no-build-isolation \
        --dest /opt/engine-wheels -r requirements-engine.lock
# Then the project itself, without touching the dependencies installed above.
COPY pyproject.toml README.md ./
COPY services ./services
COPY engine_stub ./engine_stub
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
    && /opt/venv/bin/python -c "import services, engine_stub"

# ---- runtime ---------------------------------------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="kikimimi-intermediate" \
      org.opencontainers.image.description="kikimimi gRPC front of one language's engine pool" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric non-root user, so that Kubernetes can check runAsNonRoot.
RUN groupadd --system --gid 10001 kikimimi \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin kikimimi
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INTERMEDIATE_HOST=0.0.0.0 \
    INTERMEDIATE_LOG_FORMAT=json
# Not writable by the service user, so nothing can shadow the installed packages.
WORKDIR /
USER 10001:10001
EXPOSE 50052 8082
# Healthy = ready: /readiness answers 200 (no curl in the image: Python).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('INTERMEDIATE_HTTP_PORT', '8082') + '/readiness', timeout=4)"]
CMD ["python", "-m", "services.intermediate"]
