"""A small real filesystem of its own for a test: a tmpfs mounted on a directory.

Example::

    with small_tmpfs(tmp_path / "disk", size_kib=512) as disk:
        fill(disk)                  # until the kernel answers ENOSPC
        read_only(disk)             # mount -o remount,ro: every write is EROFS

Mounting needs root (or CAP_SYS_ADMIN); where it is refused the test goes
through ``needs.missing``. A real filesystem, not a mock: the kernel itself
answers ENOSPC and EROFS, to every process writing there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from support.needs import missing

FILLER = "filler"


@contextlib.contextmanager
def small_tmpfs(where: Path, size_kib: int) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        missing(f"mounting a tmpfs ({done.stderr.strip()})", "Run the tests as root.")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path) -> int:
    """Write a filler file until the filesystem is full; the bytes written."""
    written = 0
    chunk = b"\0" * 4096
    with open(disk / FILLER, "ab") as f:
        try:
            while True:
                written += os.write(f.fileno(), chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return written


def free(disk: Path) -> None:
    (disk / FILLER).unlink()


def remount(disk: Path, mode: str) -> None:
    """``ro`` or ``rw``: the whole filesystem refuses writes, or takes them again."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True, capture_output=True)
