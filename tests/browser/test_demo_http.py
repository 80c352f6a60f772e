"""The demo page's HTTP side as a browser receives it: files, security headers, the route
listing, and the setting that turns it off."""

from __future__ import annotations

import httpx
import pytest

from services.endpoint.demo import content_security_policy
from tests.browser.conftest import Servers

FILES = {
    "": "text/html",
    "index.html": "text/html",
    "demo.js": "text/javascript",
    "pcm-worklet.js": "text/javascript",
    "demo.css": "text/css",
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_file_has_the_security_headers(servers: Servers, name: str) -> None:
    response = httpx.get(f"{servers.open}/demo/{name}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FILES[name])
    host = servers.open.removeprefix("http://")
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == f"'self' ws://{host} wss://{host}"
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


def test_a_missing_file_is_404_with_the_headers_too(servers: Servers) -> None:
    response = httpx.get(f"{servers.open}/demo/nothing.js", timeout=10)
    assert response.status_code == 404
    assert "content-security-policy" in response.headers


def test_demo_without_slash_redirects_to_the_page(servers: Servers) -> None:
    response = httpx.get(f"{servers.open}/demo", timeout=10)
    assert response.status_code in (301, 307, 308)
    assert response.headers["location"].endswith("/demo/")


def test_config_lists_the_route_tables_processes_and_languages(servers: Servers) -> None:
    response = httpx.get(f"{servers.open}/demo/config.json", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"processes": {"asr": ["en", "ja"], "nict-asr": ["en", "ja"]}}


def test_demo_off_is_404(servers: Servers) -> None:
    for path in ("/demo/", "/demo/demo.js", "/demo/config.json"):
        assert httpx.get(servers.demo_off + path, timeout=10).status_code == 404
    assert httpx.get(servers.demo_off + "/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example; script-src *", "a b", "host'", "", "x.example:80:80"]
)
def test_a_strange_host_header_never_reaches_the_policy(host: str) -> None:
    policy = content_security_policy(host)
    assert "connect-src 'self';" in policy
    assert "*" not in policy


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "asr.example.com", "[::1]:8080"])
def test_the_policy_allows_websockets_to_the_pages_own_host(host: str) -> None:
    assert f"connect-src 'self' ws://{host} wss://{host};" in content_security_policy(host)
