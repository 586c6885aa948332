"""``DELETE /v1/leases/{key}`` through a real service: the admin role, the answers, the
``deleted`` watch event, the client's ``delete`` (sync and async) and ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from leaderelection import AsyncLeaseClient, LeaseClient
from leaderelection.errors import Forbidden, LeaseHeld, LeaseNotFound
from support.procs import ServiceProcess
from support.sse import SseReader
from support.tokens import TokenSet

ROLES = {
    "reader": ("read", ""),
    "writer": ("write", ""),
    "operator": ("admin", ""),
    "team_a_operator": ("admin", "team-a."),
}


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> TokenSet:
    return TokenSet.write(tmp_path_factory.mktemp("auth") / "tokens.json", **ROLES)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, tokens: TokenSet) -> Iterator[ServiceProcess]:
    data = tmp_path_factory.mktemp("data")
    proc = ServiceProcess(
        data.as_uri(), extra_args=("--auth-file", str(tokens.path)), log_path=data / "svc.log"
    )
    with proc:
        yield proc


def _cycle(client: LeaseClient, key: str, terms: int) -> int:
    token = 0
    for i in range(terms):
        lease = client.acquire(key, f"h{i}", 5.0)
        token = lease.fencing_token
        client.release(key, f"h{i}", token)
    return token


def test_only_an_admin_token_deletes_and_within_its_prefix(
    svc: ServiceProcess, tokens: TokenSet
) -> None:
    with (
        LeaseClient(svc.url, token=tokens.tokens["writer"]) as writer,
        LeaseClient(svc.url, token=tokens.tokens["team_a_operator"]) as team_a,
        LeaseClient(svc.url, token=tokens.tokens["operator"]) as operator,
    ):
        last = _cycle(writer, "team-b.job", 2)
        for who in ("reader", "writer"):
            r = httpx.delete(f"{svc.url}/v1/leases/team-b.job", headers=tokens.header(who))
            assert r.status_code == 403 and "admin token" in r.json()["message"]
        with pytest.raises(Forbidden):
            team_a.delete("team-b.job")  # outside its prefix
        assert writer.get("team-b.job").fencing_token == last  # nothing changed
        gone = operator.delete("team-b.job")
        assert (gone.key, gone.fencing_token, gone.held, gone.state) == (
            "team-b.job",
            last,
            False,
            "released",
        )
        with pytest.raises(LeaseNotFound):
            writer.get("team-b.job")
        with pytest.raises(LeaseNotFound):
            operator.delete("team-b.job")
        held = writer.acquire("team-a.job", "busy", 5.0)
        with pytest.raises(LeaseHeld) as err:
            team_a.delete("team-a.job")
        assert err.value.lease is not None and err.value.lease.holder == "busy"
        writer.release("team-a.job", "busy", held.fencing_token)
        team_a.delete("team-a.job")
        assert writer.acquire("team-b.job", "new", 5.0).fencing_token > last


def test_the_async_client_deletes(svc: ServiceProcess, tokens: TokenSet) -> None:
    async def go() -> None:
        async with AsyncLeaseClient(svc.url, token=tokens.tokens["operator"]) as client:
            lease = await client.acquire("async.job", "a", 5.0)
            with pytest.raises(LeaseHeld):
                await client.delete("async.job")
            await client.release("async.job", "a", lease.fencing_token)
            assert (await client.delete("async.job")).fencing_token == lease.fencing_token
            with pytest.raises(LeaseNotFound):
                await client.delete("async.job")

    asyncio.run(go())


def test_watchers_of_the_key_and_of_its_prefix_get_deleted(
    svc: ServiceProcess, tokens: TokenSet
) -> None:
    header = tokens.header("operator")
    with (
        LeaseClient(svc.url, token=tokens.tokens["operator"]) as client,
        SseReader(f"{svc.url}/v1/watch?prefix=w.", headers=header) as by_prefix,
    ):
        lease = client.acquire("w.one", "a", 5.0)
        assert by_prefix.next().event == "acquired"
        with SseReader(f"{svc.url}/v1/leases/w.one/watch", headers=header) as by_key:
            assert by_key.next().data["replay"] is True
            client.release("w.one", "a", lease.fencing_token)
            assert by_prefix.next().event == "released"
            assert by_key.next().event == "released"
            client.delete("w.one")
            for events in (by_prefix, by_key):
                ev = events.next()
                assert (ev.event, ev.key, ev.data["lease"]["fencing_token"]) == (
                    "deleted",
                    "w.one",
                    lease.fencing_token,
                )
                assert ev.data["lease"]["held"] is False
            again = client.acquire("w.one", "b", 5.0)
            assert again.fencing_token > lease.fencing_token
            for events in (by_prefix, by_key):
                ev = events.next()
                assert (ev.event, ev.data["lease"]["fencing_token"]) == (
                    "acquired",
                    again.fencing_token,
                )


def test_metrics_stop_counting_a_deleted_key(svc: ServiceProcess, tokens: TokenSet) -> None:
    def released() -> float:
        text = httpx.get(f"{svc.url}/metrics", headers=tokens.header("reader")).text
        line = next(
            ln
            for ln in text.splitlines()
            if ln.startswith('leaderelection_leases{state="released"')
        )
        return float(line.rsplit(" ", 1)[1])

    with LeaseClient(svc.url, token=tokens.tokens["operator"]) as client:
        _cycle(client, "m.job", 1)
        before = released()
        client.delete("m.job")
        assert released() == before - 1
