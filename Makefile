# The whole command surface of kikimimi. `make run` and `make test` are the two set-up commands.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test tools lint typecheck proto lock bench bench-quick bench-engine soak test-containers clean
.PHONY: diff deploy undeploy

# Every third-party package is checked against the hashes in the locks (pip's hash-checking
# mode), build backends included: they are installed first, and pip builds with them
# (--no-build-isolation) instead of fetching its own. The project itself is installed
# editable on top, without dependencies. `make lock` writes the locks (docs/deploy.md, "Images").
$(STAMP): pyproject.toml requirements-bootstrap.lock requirements-build.lock requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements-bootstrap.lock
	$(BIN)/pip install -q --require-hashes -r requirements-build.lock
	$(BIN)/pip install -q --require-hashes --no-build-isolation -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m services.engine.models install  # the Whisper model, joined and checked
	touch $(STAMP)

## run: the whole stack on loopback (ports in README), Ctrl-C stops it all
run: $(STAMP)
	@cat config/ports.txt
	PATH="$(abspath $(BIN)):$$PATH" exec $(BIN)/honcho start -f Procfile

## test: everything this machine can check (the container run is `make test-containers`)
test: $(STAMP) tools lint typecheck
	bash .ci/install-test-deps.sh
	$(BIN)/pytest

## tools: compose, kubernetes-validate, hadolint and checkov in .venv-tools (apart from the lock)
tools:
	bash .ci/install-tools.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## proto: regenerate the gRPC stubs from services/common/pb/recognizer.proto
proto: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. \
		--mypy_out=. --mypy_grpc_out=. services/common/pb/recognizer.proto

## lock: re-resolve the hash-pinned locks from PyPI, keeping every pin that still fits
## (UPGRADE=name moves one package; a new dependency: add it to pyproject.toml first)
# One resolution (dev, with every extra); the image locks are its subsets (-c), so one
# package has one version everywhere. Resolved for the images' platform, from PyPI alone
# (--no-config: no machine's pip or uv configuration, local indexes or wheel folders).
UV_COMPILE = $(BIN)/uv pip compile --no-config --index-url https://pypi.org/simple \
	--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	--strip-extras --no-annotate --custom-compile-command 'make lock'
# uv alone, so that the locks can be rewritten even when the venv cannot be installed from them.
$(BIN)/uv: requirements-bootstrap.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements-bootstrap.lock
	touch $@

lock: $(BIN)/uv
	$(UV_COMPILE) requirements-bootstrap.lock -o requirements-bootstrap.lock
	$(UV_COMPILE) pyproject.toml --extra dev --extra engine $(if $(UPGRADE),--upgrade-package $(UPGRADE)) \
		-o requirements-dev.lock
	$(UV_COMPILE) pyproject.toml --extra engine -c requirements-dev.lock -o requirements-engine.lock
	$(UV_COMPILE) pyproject.toml -c requirements-dev.lock -o requirements.lock
	$(UV_COMPILE) requirements-build.in -c requirements-dev.lock -o requirements-build.lock
	$(UV_COMPILE) requirements-tools.in -o requirements-tools.lock

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

## soak: the stack under load while faults are injected (not part of test; DURATION=300)
soak: $(STAMP)
	$(BIN)/python -m bench.soak --duration $(or $(DURATION),180)

## bench-engine: the engines side by side (pocketsphinx, Whisper base/small, a naive baseline)
bench-engine: $(STAMP)
	bash .ci/install-japanese-tts.sh
	$(BIN)/python -m bench.engine

test-containers: $(STAMP)
	bash .ci/containers.sh

## diff ENV=…: what deploy would change (kubectl diff of the overlay deploy/environments.yaml names)
## deploy ENV=…: diff, then apply that overlay (production asks for the name; CONFIRM=ENV without a terminal)
## undeploy ENV=…: delete everything the overlay made, its namespace included ("delete to start over")
KUBE = $(BIN)/kikimimi-kube $(if $(CONFIRM),--yes-i-mean $(CONFIRM)) $(ENV)
OVERLAY = $$($(BIN)/python -m services.ops.environments $(ENV))
define need_env
	@test -n "$(ENV)" || { echo "ENV is not set: make $@ ENV=dev (deploy/environments.yaml)" >&2; exit 2; }
	@overlay=$(OVERLAY) && test -n "$$overlay"
endef

diff: $(STAMP)
	$(need_env)
	$(KUBE) diff -k $(OVERLAY); status=$$?; test $$status -le 1

deploy: diff
	$(KUBE) apply -k $(OVERLAY)

undeploy: $(STAMP)
	$(need_env)
	$(KUBE) delete -k $(OVERLAY) --ignore-not-found

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
