"""RouteDirectory: the (process, language) pairs of the route table in use, for clients that
offer a choice (the endpoint's demo page). Pools, backends and shadows stay inside the
router (docs/architecture.md, "Internal protocol")."""

from __future__ import annotations

import grpc

from services.common.pb import recognizer_pb2 as pb
from services.common.pb import recognizer_pb2_grpc as pb_grpc
from services.router.routes import RouteTable
from services.router.table import TableWatcher


def supported_routes(table: RouteTable) -> pb.ListRoutesResponse:
    return pb.ListRoutesResponse(
        routes=[pb.SupportedRoute(process=p, language=lang) for p, lang in sorted(table.routes)]
    )


class RouteDirectory(pb_grpc.RouteDirectoryServicer):
    def __init__(self, tables: TableWatcher) -> None:
        self.tables = tables

    async def ListRoutes(
        self,
        request: pb.ListRoutesRequest,
        context: grpc.aio.ServicerContext[pb.ListRoutesRequest, pb.ListRoutesResponse],
    ) -> pb.ListRoutesResponse:
        """The table in use now: a reload replaces it whole, so a listing is never half of
        one table and half of another."""
        return supported_routes(self.tables.table)
