"""The file calls the file backend needs beyond the ``os`` module: ``syncfs``,
``renameat2(RENAME_EXCHANGE)``, and whole-file reads and writes by descriptor.

Example::

    syncfs(records_fd)                             # every dirty page of that filesystem
    exchange(records_fd, "6b.spare", "6b.json")    # swap two names atomically
    data = read_file(records_fd, "6b.json")

``syncfs`` and ``renameat2`` come from the C library through ``ctypes`` and
run without the GIL. Where the C library lacks one, calling it raises
``OSError(ENOSYS)``, which callers treat as any other "not supported here"
(``NOT_SUPPORTED``) and fall back: ``fdatasync`` per file, ``os.replace``.
Rejected: a C extension (a build step for two calls), ``os.sync`` (every
filesystem on the host, not the one the records are on).
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

NOT_SUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})
"""What a filesystem or C library answers for a call it does not have."""

_RENAME_EXCHANGE = 2


def _libc_function(name: str) -> Any:
    """A C library function (called without the GIL), or None where there is none."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


_syncfs = _libc_function("syncfs")  # int syncfs(int fd)
if _syncfs is not None:
    _syncfs.argtypes = [ctypes.c_int]
_renameat2 = _libc_function("renameat2")  # (olddirfd, oldpath, newdirfd, newpath, flags)
if _renameat2 is not None:
    _renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]

HAVE_SYNCFS = _syncfs is not None
HAVE_EXCHANGE = _renameat2 is not None


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _missing(name: str) -> OSError:
    return OSError(errno.ENOSYS, f"{name}: {os.strerror(errno.ENOSYS)}")


def syncfs(fd: int) -> None:
    """Write out every dirty page of the filesystem that holds ``fd``."""
    if _syncfs is None:
        raise _missing("syncfs")
    _check(_syncfs(fd))


def exchange(dir_fd: int, a: str, b: str) -> None:
    """Swap the names ``a`` and ``b`` in the directory ``dir_fd``, atomically."""
    if _renameat2 is None:
        raise _missing("renameat2")
    _check(_renameat2(dir_fd, a.encode(), dir_fd, b.encode(), _RENAME_EXCHANGE))


def read_file(dir_fd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``data`` written at offset 0 of ``fd``, however many calls it takes."""
    view, offset = memoryview(data), 0
    while offset < len(data):
        offset += os.pwrite(fd, view[offset:], offset)
