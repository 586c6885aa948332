"""API token files for tests: one fresh random token per role and scope.

Example::

    tokens = TokenSet.write(tmp_path / "tokens.json", admin=("write", ""), ro=("read", ""))
    ServiceProcess(url, extra_args=("--auth-file", str(tokens.path)))
    httpx.get(url, headers=tokens.header("ro"))
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TokenSet:
    path: Path
    tokens: dict[str, str]

    @classmethod
    def write(cls, path: Path, **roles: tuple[str, str]) -> TokenSet:
        """``name=(role, prefix)`` for each token; the file is written to ``path``."""
        tokens = {name: secrets.token_urlsafe(32) for name in roles}
        entries = [
            {"token": tokens[name], "role": role, **({"prefix": prefix} if prefix else {})}
            for name, (role, prefix) in roles.items()
        ]
        path.write_text(json.dumps(entries))
        return cls(path, tokens)

    def header(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}
