"""Backend choice and DNS re-resolution without real backends."""

from __future__ import annotations

from collections import Counter

from services.router.backends import Backend, BackendPool, BackendRegistry


def pool_of(*addresses: str) -> BackendPool:
    pool = BackendPool("ja", addresses)
    for address in addresses:
        backend = Backend(address)  # a lazy channel: nothing connects until a call is made
        backend.healthy = True
        pool.backends[address] = backend
    return pool


async def test_least_loaded_backend_is_picked() -> None:
    """A new session goes to the backend with the fewest outstanding sessions."""
    pool = pool_of("a:1", "b:1", "c:1")
    pool.backends["a:1"].outstanding = 3
    pool.backends["b:1"].outstanding = 1
    pool.backends["c:1"].outstanding = 2
    picked = pool.pick()
    assert picked is not None
    assert picked.address == "b:1"


async def test_unhealthy_backends_get_no_session() -> None:
    """Only healthy backends are picked; with none healthy there is no pick."""
    pool = pool_of("a:1", "b:1")
    pool.backends["a:1"].healthy = False
    assert {pool.pick().address for _ in range(4)} == {"b:1"}
    pool.backends["b:1"].healthy = False
    assert pool.pick() is None


async def test_ties_alternate_so_sequential_sessions_split_evenly() -> None:
    """Equally loaded backends take turns: 40 one-at-a-time sessions split 20/20."""
    pool = pool_of("a:1", "b:1")
    picks = Counter(pool.pick().address for _ in range(40))
    assert picks == {"a:1": 20, "b:1": 20}


async def test_excluded_backends_are_avoided_while_others_are_left() -> None:
    """A retry avoids the backends already tried, unless no other is healthy."""
    pool = pool_of("a:1", "b:1")
    assert pool.pick(exclude=frozenset({"a:1"})).address == "b:1"
    pool.backends["b:1"].healthy = False
    assert pool.pick(exclude=frozenset({"a:1"})).address == "a:1"


async def test_dns_names_are_re_resolved_into_backends() -> None:
    """A dns:/// address becomes one backend per address it resolves to, following changes."""
    answers = [{"10.0.0.1:50052", "10.0.0.2:50052"}, {"10.0.0.2:50052", "10.0.0.3:50052"}]

    async def resolver(host: str, port: int) -> set[str]:
        assert (host, port) == ("intermediate-ja", 50052)
        return answers.pop(0)

    registry = BackendRegistry(60, resolver)
    await registry.apply({"ja": ("dns:///intermediate-ja:50052", "127.0.0.1:50060")})
    pool = registry.pools["ja"]
    assert set(pool.backends) == {"10.0.0.1:50052", "10.0.0.2:50052", "127.0.0.1:50060"}
    kept = pool.backends["10.0.0.2:50052"]
    leaving = pool.backends["10.0.0.1:50052"]
    leaving.outstanding = 1  # a session still runs on it
    registry.retired += await pool.refresh()
    assert set(pool.backends) == {"10.0.0.2:50052", "10.0.0.3:50052", "127.0.0.1:50060"}
    assert pool.backends["10.0.0.2:50052"] is kept
    assert leaving.retired
    await registry.close_idle_retired()
    assert registry.retired == [leaving]  # not closed under its session
    leaving.outstanding = 0
    await registry.close_idle_retired()
    assert registry.retired == []
    await registry.close()


async def test_dns_failure_keeps_the_backends_it_had() -> None:
    """When the name cannot be resolved, the pool keeps its backends instead of emptying."""
    answers: list[set[str] | OSError] = [{"10.0.0.1:50052"}, OSError("no such host")]

    async def resolver(host: str, port: int) -> set[str]:
        answer = answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    registry = BackendRegistry(60, resolver)
    await registry.apply({"ja": ("dns:///intermediate-ja:50052",)})
    await registry.pools["ja"].refresh()
    assert set(registry.pools["ja"].backends) == {"10.0.0.1:50052"}
    await registry.close()


async def test_reload_keeps_unchanged_backends_and_retires_removed_pools() -> None:
    """Reloading keeps backends that stay, and retires those of a pool that went away."""
    registry = BackendRegistry(60)
    await registry.apply({"ja": ("127.0.0.1:1",), "en": ("127.0.0.1:2",)})
    ja = registry.pools["ja"].backends["127.0.0.1:1"]
    en = registry.pools["en"].backends["127.0.0.1:2"]
    en.outstanding = 1
    await registry.apply({"ja": ("127.0.0.1:1", "127.0.0.1:3")})
    assert registry.pools["ja"].backends["127.0.0.1:1"] is ja
    assert set(registry.pools) == {"ja"}
    assert en.retired
    assert registry.retired == [en]
    en.outstanding = 0
    await registry.close()


async def test_a_backend_that_returns_keeps_its_sessions_and_gets_no_burst() -> None:
    """A backend that left DNS and came back while its sessions still run is the same
    backend with the same count: the least-loaded choice does not see it as empty and send
    it every new session (issue 13 item 6)."""
    answers = [
        {"10.0.0.1:50052", "10.0.0.2:50052"},
        {"10.0.0.2:50052"},
        {"10.0.0.1:50052", "10.0.0.2:50052"},
    ]

    async def resolver(host: str, port: int) -> set[str]:
        return answers.pop(0)

    registry = BackendRegistry(60, resolver)
    table = {"ja": ("dns:///intermediate-ja:50052",)}
    await registry.apply(table)  # each apply re-resolves the pool, as the resolve loop does
    pool = registry.pools["ja"]
    busy, other = pool.backends["10.0.0.1:50052"], pool.backends["10.0.0.2:50052"]
    busy.outstanding, other.outstanding = 5, 2
    await registry.apply(table)  # busy leaves DNS (it was NotReady for a while)
    assert busy.retired
    assert registry.retired == [busy]
    await registry.apply(table)  # and comes back
    assert pool.backends["10.0.0.1:50052"] is busy
    assert (busy.retired, busy.outstanding, registry.retired) == (False, 5, [])
    for backend in pool.backends.values():
        backend.healthy = True  # as their health watches will say; no await until picked
    assert Counter(pool.pick().address for _ in range(3)) == {"10.0.0.2:50052": 3}
    busy.outstanding = other.outstanding = 0
    await registry.close()
