"""API tokens: who may look at leases, who may change them, and which keys.

Example::

    # tokens.json, named by LEADERELECTION_AUTH_FILE or --auth-file
    [{"token": "3f9c0a...", "role": "write", "prefix": "team-a."},
     {"token": "77aa41...", "role": "read"}]

    table = TokenTable.load("tokens.json")   # AuthConfigError names the bad entry
    caller = table.authenticate("3f9c0a...") # the ApiToken, or None
    caller.may_write("team-a.cron")          # True
    caller.may_read("team-b.cron")           # False: outside its prefix
    caller.list_prefix("")                   # "team-a.": a listing narrows to the scope

A ``read`` token may look up, list and watch leases and see the dashboard and
metrics; a ``write`` token may also acquire, renew and release; an ``admin``
token may also revoke a holder's term (``POST /v1/leases/{key}/revoke``) and
delete a key that is not held (``DELETE /v1/leases/{key}``). A
``prefix`` limits a token to keys that start with it (every key when absent).
Without a token file everyone may do everything, revoke and delete included.

A presented token is hashed and compared with ``hmac.compare_digest`` against
the digest of every configured token, without stopping at a match, so the time
taken says nothing about which token, or how much of one, matched. Only the
digests are kept; a token's ``label`` (its place in the file, role and prefix)
is what logs and error messages may show.

Without a token file the service has no authentication: ``check_exposure``
refuses a non-loopback listen address then, unless the operator passes
``--insecure``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leaderelection_service.records import PREFIX_RE

TOKEN_MIN = 16
TOKEN_MAX = 512
TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")
"""RFC 6750 ``b64token``: what a ``Authorization: Bearer`` header can carry."""

_FIELDS = {"token", "role", "prefix"}


class AuthConfigError(ValueError):
    """The token file cannot be used; the message names the file and the entry."""


class Role(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    """May also revoke a holder's term and delete keys (within its prefix)."""


@dataclass(frozen=True, slots=True)
class ApiToken:
    """One configured token, known by its digest; ``label`` is safe to show."""

    label: str
    role: Role
    prefix: str = ""
    digest: bytes = field(default=b"", repr=False)

    def may_read(self, key: str) -> bool:
        return key.startswith(self.prefix)

    @property
    def writes(self) -> bool:
        return self.role is not Role.READ  # write, or admin (which includes write)

    def may_write(self, key: str) -> bool:
        return self.writes and key.startswith(self.prefix)

    def may_administer(self, key: str) -> bool:
        return self.role is Role.ADMIN and key.startswith(self.prefix)

    def list_prefix(self, prefix: str) -> str | None:
        """The prefix a listing for ``prefix`` runs with, or None if it is out of scope.

        A listing inside the scope runs as asked; a wider one (``""`` for a
        ``team-a.`` token) is narrowed to the scope, so a scoped token lists
        what it may see; a disjoint one (``team-b.``) is refused.
        """
        if prefix.startswith(self.prefix):
            return prefix
        if self.prefix.startswith(prefix):
            return self.prefix
        return None


OPEN = ApiToken(label="no authentication", role=Role.ADMIN)
"""The caller when the service has no token file: may do everything."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenTable:
    """The configured tokens; ``authenticate`` takes the same time for any input."""

    def __init__(self, tokens: Iterable[ApiToken], source: str = "") -> None:
        self.tokens = tuple(tokens)
        self.source = source
        if not self.tokens:
            raise AuthConfigError(f"auth file {source}: lists no tokens")

    def authenticate(self, presented: str) -> ApiToken | None:
        digest = _digest(presented)
        found: ApiToken | None = None
        for token in self.tokens:  # every one, no early exit: constant time
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found

    def summary(self) -> str:
        """``3 API tokens (2 write, 1 read) from /etc/...``: for the start-up log."""
        admins = sum(1 for t in self.tokens if t.role is Role.ADMIN)
        writers = sum(1 for t in self.tokens if t.role is Role.WRITE)
        readers = len(self.tokens) - admins - writers
        return (
            f"{len(self.tokens)} API token{'s' if len(self.tokens) != 1 else ''} "
            f"({admins} admin, {writers} write, {readers} read) from {self.source}"
        )

    @classmethod
    def load(cls, path: str | Path) -> TokenTable:
        """Read and check the token file; ``AuthConfigError`` says what is wrong.

        Messages name the entry by its position, never by its token.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AuthConfigError(f"auth file {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise AuthConfigError(f"auth file {path}: cannot read it: {reason}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # exc.msg and the position only: the text itself may hold tokens.
            raise AuthConfigError(
                f"auth file {path}: not valid JSON: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}"
            ) from None
        return cls(parse_entries(data, str(path)), str(path))


def parse_entries(data: Any, source: str) -> list[ApiToken]:
    where = f"auth file {source}"
    if not isinstance(data, list):
        raise AuthConfigError(
            f'{where}: must be a JSON list of {{"token": ..., "role": "read" | "write", '
            f'"prefix": ...}} objects'
        )
    out: list[ApiToken] = []
    seen: dict[bytes, int] = {}
    for n, entry in enumerate(data, start=1):
        at = f"{where}, entry {n}"
        if not isinstance(entry, dict):
            raise AuthConfigError(f"{at}: must be an object with token, role and prefix")
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise AuthConfigError(
                f"{at}: unknown field {', '.join(map(repr, unknown))} "
                "(allowed: token, role, prefix)"
            )
        token = entry.get("token")
        if not isinstance(token, str):
            raise AuthConfigError(f"{at}: token must be a string")
        if not TOKEN_MIN <= len(token) <= TOKEN_MAX:
            raise AuthConfigError(
                f"{at}: token must be {TOKEN_MIN}-{TOKEN_MAX} characters long, "
                f"got {len(token)} (generate one with: openssl rand -hex 32)"
            )
        if TOKEN_RE.fullmatch(token) is None:
            raise AuthConfigError(
                f"{at}: token may hold only letters, digits and - . _ ~ + / "
                "(with = padding at the end): what an Authorization: Bearer header carries"
            )
        role = entry.get("role")
        if role not in (Role.READ.value, Role.WRITE.value, Role.ADMIN.value):
            raise AuthConfigError(f'{at}: role must be "read", "write" or "admin", got {role!r}')
        prefix = entry.get("prefix", "")
        if not isinstance(prefix, str) or PREFIX_RE.fullmatch(prefix) is None:
            raise AuthConfigError(
                f"{at}: prefix must be a string of up to 128 letters, digits and . _ - "
                f"(a key prefix), got {prefix!r}"
            )
        digest = _digest(token)
        if digest in seen:
            raise AuthConfigError(f"{at}: repeats the token of entry {seen[digest]}")
        seen[digest] = n
        label = f"token #{n} ({role}{f', prefix {prefix!r}' if prefix else ''})"
        out.append(ApiToken(label=label, role=Role(role), prefix=prefix, digest=digest))
    return out


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this host only."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(host: str, *, tokens: TokenTable | None, insecure: bool) -> None:
    """Refuse to serve a non-loopback address without tokens, unless ``insecure``."""
    if tokens is not None or insecure or is_loopback(host):
        return
    raise AuthConfigError(
        f"refusing to listen on {host} without API tokens: anyone who can reach it could "
        "acquire or release any lease. Configure tokens with --auth-file "
        "(LEADERELECTION_AUTH_FILE), listen on 127.0.0.1, or pass --insecure "
        "(LEADERELECTION_INSECURE=true) if something in front of the service does the "
        "authentication."
    )
