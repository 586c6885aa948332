"""Fixtures of the conformance suite (C1): one secured service, the adapters, their processes.

Example::

    def test_x(cast: Cast) -> None:
        procs = cast.start("x", count=3)     # 3 processes of one language, or of all
        procs[0].proxy.black_hole()          # each talks to the service through its own proxy

The service is a real ``leaderelection serve`` (uvicorn) on loopback, on the
file backend, with API tokens: every adapter sends ``--token`` (a writer's),
and the read-only token is one of the permanent errors. One service for the
session, each test on its own key, keeps the suite's time small.

Each adapter process reaches the service through its own ``TcpProxy``: a
test can cut one process off alone, and ``start`` returns only once every
process has sent its first request (a process that is still starting, a
second or more on a loaded machine, must not count against a failover
bound; the adapters print nothing before they lead, so the proxy is what
can tell).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conformance.adapters import ADAPTERS, AdapterProcess, Builds, Timing
from support.procs import ServiceProcess, wait_until
from support.tcpproxy import TcpProxy
from support.tokens import TokenSet

TIMING = Timing(term=2.0, renew=0.5, retry=0.5)
"""Short terms keep every scenario within a few seconds (margin: term / 10)."""

LANGUAGES = list(ADAPTERS)
CASTS = [*LANGUAGES, "mix"]
"""Each language alone, and all of them competing for one key."""


@dataclass
class Secured:
    service: ServiceProcess
    tokens: TokenSet
    data: Path

    @property
    def url(self) -> str:
        return self.service.url


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("conformance")
    data = root / "data"
    data.mkdir()
    tokens = TokenSet.write(root / "tokens.json", writer=("write", ""), reader=("read", ""))
    svc = ServiceProcess(
        data.as_uri(), extra_args=("--auth-file", str(tokens.path)), log_path=root / "service.log"
    )
    with svc:
        yield Secured(svc, tokens, data)


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    return Builds(tmp_path_factory.mktemp("adapters"))


@dataclass
class Cast:
    """Starts adapter processes of one language, or of every language in turn (``mix``)."""

    name: str
    secured: Secured
    builds: Builds
    logs: Path
    procs: list[AdapterProcess] = field(default_factory=list)
    proxies: list[TcpProxy] = field(default_factory=list)

    def languages(self) -> list[str]:
        return LANGUAGES if self.name == "mix" else [self.name]

    def start(
        self, key: str, count: int, *, token: str | None = None, timing: Timing = TIMING
    ) -> list[AdapterProcess]:
        """``count`` adapter processes on ``key``, once each has sent a request."""
        started = []
        names = itertools.cycle(self.languages())
        for _ in range(count):
            adapter = ADAPTERS[next(names)]
            identity = f"{adapter.short}-{len(self.procs)}"
            proxy = TcpProxy(self.secured.service.port).start()
            self.proxies.append(proxy)
            proc = AdapterProcess(
                self.builds.argv(adapter),
                server=f"http://127.0.0.1:{proxy.port}",
                proxy=proxy,
                key=f"{key}-{self.name}",
                identity=identity,
                timing=timing,
                log=self.logs / f"{identity}.log",
                token=self.secured.tokens.tokens["writer"] if token is None else token,
            )
            self.procs.append(proc)
            started.append(proc)
        wait_until(
            lambda: all(p.proxy.upstream_bytes > 0 or p.proc.poll() is not None for p in started),
            30,
            what="every adapter process sent its first request",
        )
        return started


@pytest.fixture
def cast(
    request: pytest.FixtureRequest, secured: Secured, builds: Builds, tmp_path: Path
) -> Iterator[Cast]:
    c = Cast(request.param, secured, builds, tmp_path)
    try:
        yield c
    finally:
        for p in c.procs:
            p.close()
        for proxy in c.proxies:
            proxy.close()
    bad = [line for p in c.procs for line in p.bad_lines]
    assert bad == [], f"lines not in the adapters' shared format: {bad}"
