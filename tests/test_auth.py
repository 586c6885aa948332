"""The token file, roles, scopes and the listen-address guard (auth.py), no HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from leaderelection_service.auth import (
    OPEN,
    AuthConfigError,
    Role,
    TokenTable,
    check_exposure,
    is_loopback,
)

GOOD = "a" * 31 + "Z"
OTHER = "0123456789abcdef-._~+/=="


def table(tmp_path: Path, entries: Any) -> TokenTable:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(entries))
    return TokenTable.load(path)


def test_loads_roles_prefixes_and_labels_without_tokens(tmp_path: Path) -> None:
    t = table(
        tmp_path,
        [{"token": GOOD, "role": "write", "prefix": "team-a."}, {"token": OTHER, "role": "read"}],
    )
    w, r = t.tokens
    assert (w.role, w.prefix, r.role, r.prefix) == (Role.WRITE, "team-a.", Role.READ, "")
    assert w.label == "token #1 (write, prefix 'team-a.')" and r.label == "token #2 (read)"
    shown = f"{w!r} {r!r} {t.summary()}"
    assert GOOD not in shown and OTHER not in shown
    assert t.summary().startswith("2 API tokens (0 admin, 1 write, 1 read) from ")


def test_authenticate_finds_the_token_or_none(tmp_path: Path) -> None:
    t = table(tmp_path, [{"token": GOOD, "role": "write"}, {"token": OTHER, "role": "read"}])
    assert t.authenticate(GOOD) is t.tokens[0]
    assert t.authenticate(OTHER) is t.tokens[1]
    for wrong in ("", GOOD[:-1], GOOD + "a", GOOD.lower(), "é" * 40, "\udcff"):
        assert t.authenticate(wrong) is None


BAD_FILES: list[tuple[str, Any, str]] = [
    ("not a list", {"token": GOOD, "role": "read"}, "must be a JSON list"),
    ("empty", [], "lists no tokens"),
    ("entry not an object", [GOOD], "entry 1: must be an object"),
    ("unknown field", [{"token": GOOD, "role": "read", "scope": "x"}], "unknown field 'scope'"),
    ("no token", [{"role": "read"}], "entry 1: token must be a string"),
    ("token not a string", [{"token": 12345678901234567, "role": "read"}], "must be a string"),
    ("short token", [{"token": "abc", "role": "read"}], "16-512 characters long, got 3"),
    ("token with a space", [{"token": GOOD + " x", "role": "read"}], "may hold only letters"),
    ("token not ascii", [{"token": "é" * 20, "role": "read"}], "may hold only letters"),
    ("no role", [{"token": GOOD}], 'role must be "read", "write" or "admin", got None'),
    ("bad role", [{"token": GOOD, "role": "root"}], "got 'root'"),
    ("bad prefix", [{"token": GOOD, "role": "read", "prefix": "a/b"}], "prefix must be"),
    ("prefix not str", [{"token": GOOD, "role": "read", "prefix": 3}], "prefix must be"),
    (
        "duplicate",
        [
            {"token": OTHER, "role": "read"},
            {"token": GOOD, "role": "read"},
            {"token": GOOD, "role": "write"},
        ],
        "entry 3: repeats the token of entry 2",
    ),
]


@pytest.mark.parametrize(
    ("entries", "expected"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_bad_token_file_is_a_clear_error_that_never_shows_a_token(
    tmp_path: Path, entries: Any, expected: str
) -> None:
    with pytest.raises(AuthConfigError) as err:
        table(tmp_path, entries)
    message = str(err.value)
    assert expected in message
    assert str(tmp_path / "tokens.json") in message
    assert GOOD not in message and OTHER not in message


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="no such file"):
        TokenTable.load(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"token": "' + GOOD + '", "role": ')
    with pytest.raises(AuthConfigError, match=r"not valid JSON: .* line 1 column") as err:
        TokenTable.load(broken)
    assert GOOD not in str(err.value)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(AuthConfigError, match="not UTF-8"):
        TokenTable.load(binary)


def test_roles_and_key_scope(tmp_path: Path) -> None:
    w, r = table(
        tmp_path,
        [
            {"token": GOOD, "role": "write", "prefix": "team-a."},
            {"token": OTHER, "role": "read", "prefix": "team-a."},
        ],
    ).tokens
    assert w.may_write("team-a.cron") and w.may_read("team-a.cron")
    assert not w.may_write("team-b.cron") and not w.may_read("team-b.cron")
    assert not w.may_write("team-a") and not w.may_write("Team-a.cron")
    assert r.may_read("team-a.cron") and not r.may_write("team-a.cron")
    assert OPEN.may_write("anything") and OPEN.list_prefix("") == ""


@pytest.mark.parametrize(
    ("scope", "asked", "runs"),
    [
        ("team-a.", "team-a.", "team-a."),
        ("team-a.", "team-a.cron", "team-a.cron"),  # inside: as asked
        ("team-a.", "", "team-a."),  # wider: narrowed to the scope
        ("team-a.", "team", "team-a."),
        ("team-a.", "team-b.", None),  # disjoint: refused
        ("team-a.", "team-ab", None),
        ("", "anything", "anything"),
    ],
)
def test_list_prefix_narrows_or_refuses(scope: str, asked: str, runs: str | None) -> None:
    token = OPEN.__class__(label="t", role=Role.READ, prefix=scope)
    assert token.list_prefix(asked) == runs


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.internal", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_check_exposure(tmp_path: Path) -> None:
    tokens = table(tmp_path, [{"token": GOOD, "role": "read"}])
    check_exposure("127.0.0.1", tokens=None, insecure=False)
    check_exposure("0.0.0.0", tokens=tokens, insecure=False)
    check_exposure("0.0.0.0", tokens=None, insecure=True)
    with pytest.raises(
        AuthConfigError,
        match=r"refusing to listen on 0\.0\.0\.0 without API "
        r"tokens.*--auth-file.*--insecure",
    ):
        check_exposure("0.0.0.0", tokens=None, insecure=False)


def test_admin_role_writes_and_administers_within_its_prefix(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([{"token": GOOD, "role": "admin", "prefix": "ops."}]))
    admin = TokenTable.load(path).authenticate(GOOD)
    assert admin is not None and admin.role is Role.ADMIN
    assert admin.may_write("ops.k") and admin.may_administer("ops.k")
    assert not admin.may_write("web.k") and not admin.may_administer("web.k")
    assert OPEN.may_administer("any.key")  # no token file: everyone is admin
