"""Keys of every length on the file backend: names on disk, earlier directories,
and one tenant's writes never failing another's (isolation, I4).

The contract suite (test_contract.py) holds every backend to 128-character
keys; this module covers what is the file backend's own: the directory an
earlier version wrote, stray files, and the attack of issue 13 through a real
service with scoped tokens.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx

from leaderelection_service.backends.file import FileStore
from leaderelection_service.backends.file.names import file_name, key_of
from leaderelection_service.lease_rules import CasLeases
from support.procs import ServiceProcess
from support.tokens import TokenSet

LONG = "team-a." + "z" * 121  # 128 characters: its hex name would be 256 bytes
ATTACK = "team-a." + "z" * 117  # and one more: 125 characters, as in the issue (the
# hex-named record fits, 255 bytes; its spare does not, and failed the batch)


def test_the_longest_key_names_fit_a_file_name(tmp_path: Path) -> None:
    async def run() -> None:
        store = FileStore(tmp_path)
        try:
            await CasLeases(store).acquire(LONG, "a", 30.0)
        finally:
            await store.close()

    asyncio.run(run())
    names = [p.name for d in ("leases", "locks") for p in (tmp_path / d).iterdir()]
    assert names and all(len(n.encode()) <= 255 for n in names)
    assert all(n == n.lower() for n in names)  # one file per key on a case-folding filesystem


def test_each_key_has_exactly_one_name() -> None:
    for key in ["a", "A", "k" * 124, "k" * 125, "K" * 128, "9" + "._-" * 42 + "z"]:
        name = file_name(key)
        assert key_of(name) == key
        assert len(name.encode()) + len(".spare") <= 255
    # Forged second names: a short key in the long form, a long key in hex.
    short = base64.b32hexencode(b"a").decode().rstrip("=").lower()
    assert key_of("b32." + short) is None
    assert key_of(("k" * 125).encode().hex()) is None
    assert key_of("b32.") is None and key_of("") is None


def test_a_directory_of_an_earlier_version_keeps_working(tmp_path: Path) -> None:
    """Hex-named records, written whole without a checksum as earlier versions did."""
    leases = tmp_path / "leases"
    leases.mkdir()
    (tmp_path / "locks").mkdir()
    for key, holder in [("cron", "a"), ("b" * 124, "b")]:
        fields = {
            "key": key,
            "holder": holder,
            "fencing_token": 7,
            "acquired_at": "2026-11-27T12:00:00.000000Z",
            "renewed_at": "2026-11-27T12:00:00.000000Z",
            "expires_at": "2999-01-01T00:00:00.000000Z",
            "ttl": 30.0,
            "transitions": 6,
            "revision": 3,
            "released": False,
            "history": [],
        }
        (leases / f"{key.encode().hex()}.json").write_text(json.dumps(fields))
    (leases / "README.json").write_text("{}")  # stray files are no keys
    (leases / "b32.zz.json").write_text("{}")
    (leases / "636F726E.json").write_text("{}")  # "cron" in upper-case hex: not its name

    async def run() -> None:
        store = FileStore(tmp_path)
        rules = CasLeases(store)
        try:
            listed = [v.record.key for v in await rules.list("", None, 10)]
            assert listed == ["b" * 124, "cron"]
            renewed = await rules.renew("cron", "a", 7, 60.0)
            assert renewed.record.fencing_token == 7
            await rules.acquire("b" * 125, "c", 30.0)  # a long key beside them
            listed = [v.record.key for v in await rules.list("b", None, 10)]
            assert listed == ["b" * 124, "b" * 125]
        finally:
            await store.close()

    asyncio.run(run())
    # The record kept its name: a process of the earlier version still finds it.
    written = json.loads((leases / f"{b'cron'.hex()}.json").read_text().rstrip())
    assert (written["holder"], written["ttl"], written["revision"]) == ("a", 60.0, 4)


def test_a_tenant_acquiring_long_keys_never_fails_another_tenants_renewals(
    data_dir: Path, tmp_path: Path
) -> None:
    """Issue 13: ``team-a.`` + 121 characters in a loop made 10 % of another
    tenant's renewals answer 503, because their writes shared its batch."""
    tokens = TokenSet.write(
        tmp_path / "tokens.json", a=("write", "team-a."), b=("write", "team-b.")
    )
    extra = ("--auth-file", str(tokens.path))
    with ServiceProcess(data_dir.as_uri(), extra_args=extra, log_path=tmp_path / "s.log") as svc:
        asyncio.run(_attack(svc.url, tokens))


async def _attack(url: str, tokens: TokenSet) -> None:
    keys = [f"team-b.k{i}" for i in range(32)]
    async with (
        httpx.AsyncClient(base_url=url, headers=tokens.header("a"), timeout=30) as a,
        httpx.AsyncClient(base_url=url, headers=tokens.header("b"), timeout=30) as b,
    ):
        fence = {}
        for key in keys:
            got = await b.post(f"/v1/leases/{key}/acquire", json={"holder": "b", "ttl": 60})
            assert got.status_code == 200, got.text
            fence[key] = got.json()["fencing_token"]
        done = asyncio.Event()
        attacks: list[int] = []

        async def attacker(n: int) -> None:
            key = ATTACK + "abcd"[n]
            while not done.is_set():
                got = await a.post(f"/v1/leases/{key}/acquire", json={"holder": "a", "ttl": 60})
                attacks.append(got.status_code)

        async def renew(key: str) -> int:
            body = {"holder": "b", "fencing_token": fence[key], "ttl": 60}
            return (await b.post(f"/v1/leases/{key}/renew", json=body)).status_code

        running = [asyncio.create_task(attacker(n)) for n in range(4)]
        renewals: list[int] = []
        try:
            for _ in range(10):  # 320 renewals, racing the attackers' writes
                renewals += await asyncio.gather(*(renew(k) for k in keys))
        finally:
            done.set()
            await asyncio.gather(*running)
        assert renewals == [200] * len(renewals)
        assert attacks and set(attacks) == {200}
        listed = (await a.get("/v1/leases", params={"prefix": "team-a."})).json()
        assert [r["key"] for r in listed["leases"]] == [ATTACK + c for c in "abcd"]
