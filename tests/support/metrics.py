"""The one `/metrics` reader of the tests: Prometheus text → the value of a sample."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support import http
from tests.support.processes import Service


def samples(text: str) -> list[Sample]:
    """Every sample of a `/metrics` text."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when none).

    `name` is the sample's name as exported (`…_total`, `…_bucket`, `…_count`); give every
    label of a sample to read that one sample."""
    return sum(
        (s.value for s in samples(text) if s.name == name and labels.items() <= s.labels.items()),
        0.0,
    )


async def scrape(service: Service | str) -> str:
    """The text of `GET /metrics` of a service (its `http` port) or of a base URL."""
    return await http.get_text(f"{http.base_url(service)}/metrics")


async def metric(service: Service | str, name: str, **labels: str) -> float:
    """One metric of a service now (see `metric_value`)."""
    return metric_value(await scrape(service), name, **labels)
