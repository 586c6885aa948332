"""The README's set-up: two commands, and where the command they install lives."""

from __future__ import annotations

import re

from support.procs import REPO


def setup_section() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("## Set up", 1)[1].split("\n## ", 1)[0]


def test_setup_keeps_two_commands_and_says_where_leaderelection_is() -> None:
    section = setup_section()
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["./dev serve", "./dev test"]
    assert "`.venv/bin/leaderelection`" in section
    # ... which is where ./dev installs and runs it.
    dev = (REPO / "dev").read_text()
    assert re.search(r'^VENV="\$\{LEADERELECTION_VENV:-\.venv\}"$', dev, re.M)
    assert 'exec "$VENV/bin/leaderelection" serve' in dev
