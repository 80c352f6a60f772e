"""The stack the integration tests talk to.

By default each test module starts its own stack as real processes (engine_stub for ja
and en). With KIKIMIMI_TEST_ENDPOINT=http://127.0.0.1:8080 (and KIKIMIMI_TEST_TOKEN when
auth is on) the tests marked `external` run against that stack instead — the docker
compose stack in `make test-containers`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.audio import sample_audio
from tests.support.stack import Stack


@dataclass(frozen=True)
class Target:
    http: str  # http://127.0.0.1:PORT
    token: str = ""

    @property
    def ws(self) -> str:
        return "ws" + self.http.removeprefix("http") + "/"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    external = os.environ.get("KIKIMIMI_TEST_ENDPOINT", "").rstrip("/")
    if external:
        yield Target(external, os.environ.get("KIKIMIMI_TEST_TOKEN", ""))
        return
    with Stack(tmp_path_factory.mktemp("stack")) as stack:
        ja = stack.intermediate("intermediate-ja", [stack.engine_stub("engine-ja")])
        en = stack.intermediate("intermediate-en", [stack.engine_stub("engine-en")])
        router = stack.router({"ja": [ja], "en": [en]})
        endpoint = stack.endpoint(router)
        yield Target(f"http://127.0.0.1:{endpoint.ports['http']}")


@pytest.fixture(scope="session")
def sample() -> bytes:
    return sample_audio()
