"""The route table without I/O: parsing, validation errors naming the line, lookups."""

from __future__ import annotations

import pytest

from services.router.routes import RouteTableError, parse_route_table

GOOD = """\
pools:
  ja: {backends: ["127.0.0.1:50052", "dns:///intermediate-ja:50052"]}
  ja-next: {backends: ["[::1]:50062"]}
  en: {backends: ["127.0.0.1:50053"]}
routes:
  - process: [asr, nict-asr]
    language: ja
    pool: ja
    shadow: {pool: ja-next, fraction: 0.25}
  - {process: asr, language: en, pool: en}
"""


def error_of(text: str) -> str:
    with pytest.raises(RouteTableError) as info:
        parse_route_table(text, "routes.yaml")
    return str(info.value)


def test_routes_map_process_and_language_to_pools() -> None:
    """Each process of a route gets its own entry with the route's pool and shadow."""
    table = parse_route_table(GOOD)
    route = table.lookup("nict-asr", "ja")
    assert route is not None
    assert (route.pool, route.shadow_pool, route.shadow_fraction) == ("ja", "ja-next", 0.25)
    assert table.lookup("asr", "en") is not None
    assert table.lookup("nict-asr", "en") is None


def test_supported_languages_and_processes_are_listed() -> None:
    """The table lists the languages of a process and every process, sorted."""
    table = parse_route_table(GOOD)
    assert table.languages("asr") == ["en", "ja"]
    assert table.languages("nict-asr") == ["ja"]
    assert table.processes() == ["asr", "nict-asr"]


def test_unknown_pool_names_the_route_line() -> None:
    """A route naming a pool that does not exist is refused with the route's line."""
    message = error_of(GOOD.replace("pool: ja\n", "pool: jp\n"))
    assert message.startswith("routes.yaml:6:")
    assert "'jp'" in message


def test_missing_field_names_its_line() -> None:
    """A route without a language is refused with the line of that route."""
    message = error_of(
        GOOD.replace("{process: asr, language: en, pool: en}", "{process: asr, pool: en}")
    )
    assert message.startswith("routes.yaml:10:")
    assert "language" in message


def test_bad_fraction_names_its_line() -> None:
    """A shadow fraction above 1 is refused with the line of the fraction."""
    message = error_of(GOOD.replace("fraction: 0.25", "fraction: 1.5"))
    assert message.startswith("routes.yaml:9:")
    assert "fraction" in message


def test_bad_backend_address_names_its_line() -> None:
    """A backend that is not host:port or dns:///name:port is refused with its line."""
    message = error_of(GOOD.replace('"127.0.0.1:50053"', '"http://x:1"'))
    assert message.startswith("routes.yaml:4:")
    assert "http://x:1" in message


def test_unknown_key_is_refused() -> None:
    """A misspelt key is an error, not silently ignored."""
    message = error_of(GOOD.replace("shadow:", "shaddow:"))
    assert "shaddow" in message


def test_route_given_twice_is_refused() -> None:
    """The same process and language routed twice is refused, naming both."""
    message = error_of(GOOD + "  - {process: nict-asr, language: ja, pool: en}\n")
    assert "nict-asr/ja is routed twice" in message
    assert message.startswith("routes.yaml:11:")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "pools: {ja: [\n"])
def test_not_a_table_is_refused(text: str) -> None:
    """Empty files, lists and broken YAML are refused with the file's name."""
    assert error_of(text).startswith("routes.yaml")
