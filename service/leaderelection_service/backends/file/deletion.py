"""The file backend's delete and token floor, under the same per-key ``flock`` as writes.

Example::

    floor = FloorFile(root_fd, locks_fd)
    floor.raise_to(8)                        # durable: file data and directory fsynced
    floor.read()                             # 8
    delete_record(records_fd, locks_fd, "636a", key="cj", expected=8)

The floor (``token_floor.py``) is one small file, ``token-floor`` in the
backend's directory, holding ``{"floor": N}``. Raising it takes the floor's own
lock file, reads, and if it must grow writes a temporary file, ``fdatasync``,
renames it over the floor and ``fsync``\\ s the directory: durable before the
delete goes on. Deleting a record takes the key's lock file (the one
``committer.py`` takes for every write, so a batch never writes a record being
deleted), checks the revision, removes the record and its spare, and
``fsync``\\ s the directory: durable before the answer (durability, I3).

The key's lock file stays (empty, in ``locks/``): removing a file others may
``flock`` lets two processes lock two different files of one name. Rejected:
a delete through the group commit, which would complicate every batch for an
operator's rare act.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator

from leaderelection_service.backends.file import syscalls
from leaderelection_service.backends.file.encoding import Torn, decode
from leaderelection_service.backends.file.names import LOCK_SUFFIX, RECORD_SUFFIX, SPARE_SUFFIX
from leaderelection_service.lease_errors import BackendUnavailable, WriteConflict

FLOOR_FILE = "token-floor"
FLOOR_LOCK = ".token-floor" + LOCK_SUFFIX  # never a key's lock name (those are hex or b32.)
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC


@contextlib.contextmanager
def _locked(locks_fd: int, name: str) -> Iterator[None]:
    fd = os.open(name, _LOCK_FLAGS, 0o644, dir_fd=locks_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class FloorFile:
    def __init__(self, root_fd: int, locks_fd: int) -> None:
        self.root_fd = root_fd
        self.locks_fd = locks_fd

    def read(self) -> int:
        try:
            data = syscalls.read_file(self.root_fd, FLOOR_FILE)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise BackendUnavailable(f"cannot read {FLOOR_FILE}: {exc.strerror}") from exc
        try:
            return int(json.loads(data)["floor"])
        except (ValueError, KeyError, TypeError) as exc:
            # Replaced by rename only, so never torn: damaged. Never guess a floor.
            raise BackendUnavailable(
                f"{FLOOR_FILE} is damaged", kind="the token floor is damaged"
            ) from exc

    def raise_to(self, at_least: int) -> None:
        try:
            with _locked(self.locks_fd, FLOOR_LOCK):
                if self.read() >= at_least:
                    return
                tmp = f"{FLOOR_FILE}.{os.getpid()}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=self.root_fd)
                try:
                    syscalls.write_all(fd, json.dumps({"floor": at_least}).encode())
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, FLOOR_FILE, src_dir_fd=self.root_fd, dst_dir_fd=self.root_fd)
                os.fsync(self.root_fd)
        except OSError as exc:
            raise BackendUnavailable(f"cannot raise the token floor: {exc.strerror}") from exc


def delete_record(records_fd: int, locks_fd: int, name: str, *, key: str, expected: int) -> None:
    """Remove ``name``'s record if its revision is ``expected`` (else ``WriteConflict``)."""
    try:
        with _locked(locks_fd, name + LOCK_SUFFIX):
            try:
                data = syscalls.read_file(records_fd, name + RECORD_SUFFIX)
            except FileNotFoundError:
                raise WriteConflict(key) from None
            try:
                fields, _ = decode(data)
                revision = int(fields["revision"])
            except (Torn, KeyError, TypeError, ValueError) as exc:
                raise BackendUnavailable(
                    f"lease file of {key!r} is damaged", kind="the lease's record is damaged"
                ) from exc
            if revision != expected:
                raise WriteConflict(key)
            os.unlink(name + RECORD_SUFFIX, dir_fd=records_fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name + SPARE_SUFFIX, dir_fd=records_fd)
            os.fsync(records_fd)
    except OSError as exc:
        raise BackendUnavailable(f"cannot delete lease file: {exc.strerror}") from exc
