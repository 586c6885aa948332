"""The client SDK with API tokens, against a real service with a token file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from leaderelection import (
    AsyncLeaseClient,
    Config,
    Forbidden,
    LeaderElector,
    LeaseClient,
    Unauthorized,
)
from support.procs import ServiceProcess
from support.tokens import TokenSet


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TokenSet]]:
    root: Path = tmp_path_factory.mktemp("client-auth")
    (root / "data").mkdir()
    tokens = TokenSet.write(
        root / "tokens.json",
        writer=("write", ""),
        reader=("read", ""),
        team_a=("write", "team-a."),
    )
    svc = ServiceProcess(
        (root / "data").as_uri(),
        extra_args=("--auth-file", str(tokens.path)),
        log_path=root / "service.log",
    )
    with svc:
        yield svc.url, tokens


def test_client_sends_its_token(secured: tuple[str, TokenSet]) -> None:
    url, tokens = secured
    with LeaseClient(url, token=tokens.tokens["writer"]) as client:
        lease = client.acquire("sdk-1", "a", ttl=30)
        assert client.renew("sdk-1", "a", lease.fencing_token).fencing_token == lease.fencing_token
        assert client.get("sdk-1").holder == "a"
        assert [x.key for x in client.list(prefix="sdk-")] == ["sdk-1"]
        client.release("sdk-1", "a", lease.fencing_token)


def test_client_maps_401_and_403(secured: tuple[str, TokenSet]) -> None:
    url, tokens = secured
    with LeaseClient(url) as anonymous, pytest.raises(Unauthorized) as err:
        anonymous.get("sdk-2")
    assert err.value.status == 401 and err.value.code == "unauthorized"
    with (
        LeaseClient(url, token="not-a-token-of-this-service") as wrong,
        pytest.raises(Unauthorized),
    ):
        wrong.acquire("sdk-2", "a", ttl=30)
    with LeaseClient(url, token=tokens.tokens["reader"]) as reader:
        with pytest.raises(Forbidden) as denied:
            reader.acquire("sdk-2", "a", ttl=30)
        assert denied.value.status == 403 and "may only read" in denied.value.message
    with LeaseClient(url, token=tokens.tokens["team_a"]) as team_a:
        team_a.acquire("team-a.job", "a", ttl=30)
        with pytest.raises(Forbidden, match="outside the prefix"):
            team_a.acquire("team-b.job", "a", ttl=30)
        assert [x.key for x in team_a.list()] == ["team-a.job"]  # narrowed to its scope


async def test_async_client_sends_its_token(secured: tuple[str, TokenSet]) -> None:
    url, tokens = secured
    async with AsyncLeaseClient(url, token=tokens.tokens["writer"]) as client:
        lease = await client.acquire("sdk-async", "a", ttl=30)
        assert (await client.get("sdk-async")).fencing_token == lease.fencing_token
    async with AsyncLeaseClient(url, token=tokens.tokens["reader"]) as reader:
        with pytest.raises(Forbidden):
            await reader.release("sdk-async", "a", lease.fencing_token)


def test_elector_leads_with_a_write_token(secured: tuple[str, TokenSet]) -> None:
    url, tokens = secured
    with LeaseClient(url, token=tokens.tokens["writer"]) as client:
        elector = LeaderElector(client, "sdk-elect", config=Config(term=4, renew=1, retry=0.5))
        with elector:
            assert elector.wait_for_leadership(timeout=30)
            assert client.get("sdk-elect").holder == elector.identity
        assert client.get("sdk-elect").held is False  # released on exit
