"""The async client SDK with API tokens, against a real service with a token file
(the blocking client and the elector: ``test_client_api.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from leaderelection import (
    AsyncLeaseClient,
    Forbidden,
    Unauthorized,
)
from support.procs import secured_service
from support.tokens import TokenSet


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TokenSet]]:
    root: Path = tmp_path_factory.mktemp("client-auth")
    roles = {"writer": ("write", ""), "reader": ("read", ""), "team_a": ("write", "team-a.")}
    with secured_service(root, **roles) as (svc, tokens):
        yield svc.url, tokens


async def test_async_client_sends_its_token(secured: tuple[str, TokenSet]) -> None:
    url, tokens = secured
    async with AsyncLeaseClient(url, token=tokens.tokens["writer"]) as client:
        lease = await client.acquire("sdk-async", "a", ttl=30)
        assert (await client.get("sdk-async")).fencing_token == lease.fencing_token
        assert [x.key async for x in client.list(prefix="sdk-")] == ["sdk-async"]
    async with AsyncLeaseClient(url) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.get("sdk-async")
    async with AsyncLeaseClient(url, token=tokens.tokens["team_a"]) as team_a:
        await team_a.acquire("team-a.job", "a", ttl=30)
        with pytest.raises(Forbidden, match="outside the prefix"):
            await team_a.acquire("team-b.job", "a", ttl=30)
        assert [x.key async for x in team_a.list()] == ["team-a.job"]  # narrowed to its scope
    async with AsyncLeaseClient(url, token=tokens.tokens["reader"]) as reader:
        with pytest.raises(Forbidden):
            await reader.release("sdk-async", "a", lease.fencing_token)
