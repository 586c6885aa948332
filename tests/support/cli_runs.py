"""``leaderelection run`` child processes for tests, and their clean-up.

Example::

    class Run(CliRun):
        def __init__(self, tmp, server, key, holder, *cmd):
            argv = run_argv(server, key, holder, ttl=5.0, retry=0.5)
            super().__init__(tmp / f"{holder}.err", [*argv, "--", *cmd])

    @pytest.fixture
    def runs() -> Iterator[list[Run]]:
        with reaped() as started:
            yield started

stderr goes to a file rather than a pipe: a pipe nobody reads fills up and
blocks the child, and the file can be read again and again while it runs.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar


def run_argv(server: str, key: str, holder: str, *, ttl: float, retry: float) -> list[str]:
    """``python -m leaderelection_service.cli run`` with its server, key, holder and timing."""
    argv = [sys.executable, "-m", "leaderelection_service.cli", "run", "--server", server]
    return [*argv, "--key", key, "--holder", holder, "--ttl", str(ttl), "--retry", str(retry)]


class CliRun:
    """One child process, its stderr in ``err``."""

    WAIT = 30.0  # seconds ``wait()`` allows by default

    def __init__(self, err: Path, argv: Sequence[str]) -> None:
        self.err = err
        with open(err, "wb") as out:
            self.proc = subprocess.Popen(list(argv), stderr=out)

    def says(self, text: str) -> bool:
        return text in self.err.read_text()

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(self.WAIT if timeout is None else timeout)


R = TypeVar("R", bound=CliRun)


@contextlib.contextmanager
def reaped() -> Iterator[list[R]]:
    """A list to append runs to; those still running at the end are killed."""
    started: list[R] = []
    try:
        yield started
    finally:
        for run in started:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait(10)
