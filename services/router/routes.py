"""The route table: (process, language) → backend pool, with an optional shadow pool.

```yaml
pools:
  ja: {backends: ["127.0.0.1:50052"]}          # or ["dns:///intermediate-ja:50052"]
  ja-next: {backends: ["127.0.0.1:50062"]}
routes:
  - {process: [asr, nict-asr], language: ja, pool: ja, shadow: {pool: ja-next, fraction: 0.1}}
```

Parsing and validation are pure: a bad table raises `RouteTableError` naming the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.common.yaml_lines import line_of


class RouteTableError(ValueError):
    pass


def check_address(address: str) -> None:
    """`host:port`, `[v6]:port` or `dns:///name:port`; raises ValueError naming the address."""
    host, sep, port = address.removeprefix("dns:///").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port or dns:///name:port")
    if "/" in host:
        raise ValueError(f"{address!r}: only the dns:/// scheme is supported")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolSpec(_Strict):
    backends: list[str] = Field(min_length=1)

    @field_validator("backends")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            check_address(address)
        return value


class ShadowSpec(_Strict):
    pool: str
    fraction: float = Field(ge=0.0, le=1.0)


class RouteSpec(_Strict):
    process: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    language: str = Field(min_length=1)
    pool: str
    shadow: ShadowSpec | None = None

    @field_validator("process", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class TableSpec(_Strict):
    pools: dict[str, PoolSpec]
    routes: list[RouteSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Route:
    process: str
    language: str
    pool: str
    shadow_pool: str | None = None
    shadow_fraction: float = 0.0


@dataclass(frozen=True)
class RouteTable:
    pools: dict[str, tuple[str, ...]]
    routes: dict[tuple[str, str], Route]

    def lookup(self, process: str, language: str) -> Route | None:
        return self.routes.get((process, language))

    def processes(self) -> list[str]:
        return sorted({p for p, _ in self.routes})

    def languages(self, process: str) -> list[str]:
        return sorted(lang for p, lang in self.routes if p == process)


def parse_route_table(text: str, source: str = "routes") -> RouteTable:
    try:
        document = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RouteTableError(f"{source}: not valid YAML: {exc}") from None
    if document is None or not isinstance(data, dict):
        raise RouteTableError(f"{source}: expected a mapping with 'pools' and 'routes'")
    try:
        spec = TableSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = tuple(error["loc"])
            where = ".".join(str(p) for p in path)
            problems.append(f"{source}:{line_of(document, path)}: {where}: {error['msg']}")
        raise RouteTableError("\n".join(problems)) from None
    routes: dict[tuple[str, str], Route] = {}
    for index, route in enumerate(spec.routes):
        line = line_of(document, ("routes", index))
        for name in [route.pool] + ([route.shadow.pool] if route.shadow else []):
            if name not in spec.pools:
                raise RouteTableError(f"{source}:{line}: routes.{index}: unknown pool {name!r}")
        for process in route.process:
            key = (process, route.language)
            if key in routes:
                raise RouteTableError(
                    f"{source}:{line}: routes.{index}: {process}/{route.language} is routed twice"
                )
            routes[key] = Route(
                process,
                route.language,
                route.pool,
                route.shadow.pool if route.shadow else None,
                route.shadow.fraction if route.shadow else 0.0,
            )
    pools = {name: tuple(p.backends) for name, p in spec.pools.items()}
    return RouteTable(pools, routes)
