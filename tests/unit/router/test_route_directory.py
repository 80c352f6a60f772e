"""RouteDirectory.ListRoutes in-process: the router's servicer over a real socket, asked by
the endpoint's RouterClient, following the route table file as it is reloaded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from services.common.pb import recognizer_pb2 as pb
from services.common.pb import recognizer_pb2_grpc as pb_grpc
from services.endpoint.backend import RouterClient
from services.router.directory import RouteDirectory
from services.router.metrics import Metrics
from services.router.routes import RouteTable
from services.router.table import TableWatcher, read_table

TABLE = """\
pools:
  ja: {backends: ["127.0.0.1:50052", "dns:///intermediate-ja:50052"]}
  ja-next: {backends: ["10.1.2.3:50062"]}
  en: {backends: ["127.0.0.1:50053"]}
routes:
  - {process: [nict-asr, asr], language: ja, pool: ja, shadow: {pool: ja-next, fraction: 0.5}}
  - {process: asr, language: en, pool: en}
"""
RELOADED = """\
pools:
  ko: {backends: ["127.0.0.1:50054"]}
routes:
  - {process: nict-asr, language: ko, pool: ko}
"""


@dataclass
class Directory:
    path: Path
    watcher: TableWatcher
    address: str


@pytest.fixture
async def directory(tmp_path: Path) -> AsyncIterator[Directory]:
    path = tmp_path / "routes.yaml"
    path.write_text(TABLE)
    loaded = read_table(path)
    assert loaded is not None
    watcher = TableWatcher(path, loaded, Metrics())
    server = grpc.aio.server()
    pb_grpc.add_RouteDirectoryServicer_to_server(RouteDirectory(watcher), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Directory(path, watcher, f"127.0.0.1:{port}")
    finally:
        await server.stop(grace=None)


async def apply_nothing(table: RouteTable) -> None:
    """The registry's part of a reload; this test has no backends to resolve."""


async def list_routes(address: str) -> dict[str, list[str]]:
    client = RouterClient(address, deadline=5)
    try:
        return await client.list_routes()
    finally:
        await client.close()


async def test_the_endpoint_gets_each_process_with_its_languages(directory: Directory) -> None:
    """Every process a route names, sorted, with its languages, sorted."""
    assert await list_routes(directory.address) == {"asr": ["en", "ja"], "nict-asr": ["ja"]}


async def test_the_listing_names_no_pool_backend_or_shadow(directory: Directory) -> None:
    """Only the names a client may send: the reply holds no pool name and no address."""
    async with grpc.aio.insecure_channel(directory.address) as channel:
        reply = await pb_grpc.RouteDirectoryStub(channel).ListRoutes(
            pb.ListRoutesRequest(), timeout=5
        )
    assert [(r.process, r.language) for r in reply.routes] == [
        ("asr", "en"),
        ("asr", "ja"),
        ("nict-asr", "ja"),
    ]
    wire = reply.SerializeToString()
    for secret in (b"ja-next", b"10.1.2.3", b"127.0.0.1", b"intermediate-ja", b"pool"):
        assert secret not in wire


async def test_a_reloaded_table_is_listed_and_a_rejected_one_is_not(
    directory: Directory,
) -> None:
    """After a reload the listing is the new table; a file that does not validate leaves the
    listing of the table still in use."""
    directory.path.write_text(RELOADED)
    await directory.watcher.reload_once(apply_nothing)
    assert await list_routes(directory.address) == {"nict-asr": ["ko"]}
    directory.path.write_text("pools: {}\nroutes: []\n")
    await directory.watcher.reload_once(apply_nothing)
    assert directory.watcher.error
    assert await list_routes(directory.address) == {"nict-asr": ["ko"]}
