"""File backend: one JSON file per key in a directory on one host.

Example::

    store = FileStore("/var/lib/leaderelection")
    leases = CasLeases(store)

URL ``file:///var/lib/leaderelection``. Every write is a compare-and-set under
the key's ``fcntl.flock``, shared by every process on the host, so
``--workers 2`` and several services on one directory are safe. Writes are
group-committed (``group_commit.py``, ``committer.py``): those that arrive together are
checked, written and made durable as one batch by one worker thread, with one
``syncfs`` (``sync="file"``: one ``fdatasync`` per record) and one directory
``fsync`` for the whole batch, before any of them is answered (durability (I3)). The
layout and the file names are in ``names.py``, the record encoding in ``encoding.py``.

Reads take no lock and run in the event loop itself: a record is one small
file in the page cache, and opening and parsing it costs less than handing it
to a thread and back (docs/design.md gives the figures). A record is replaced
atomically, so a reader sees the old or the new one; a reader that catches a
spare being rewritten under it finds the checksum wrong and reads again.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Literal

import anyio.to_thread

from leaderelection_service.backends.file.committer import Committer
from leaderelection_service.backends.file.deletion import FloorFile, delete_record
from leaderelection_service.backends.file.encoding import Torn, decode, encode
from leaderelection_service.backends.file.group_commit import GroupCommit
from leaderelection_service.backends.file.names import (
    LOCKS_DIR,
    LONG_PREFIX,
    RECORD_SUFFIX,
    RECORDS_DIR,
    file_name,
    key_of,
)
from leaderelection_service.backends.file.syscalls import read_file
from leaderelection_service.lease_errors import BackendUnavailable
from leaderelection_service.records import LeaseRecord
from leaderelection_service.storage import Capabilities, Versioned

PROBE_PREFIX = "probe."
_PROBE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
_PROBE_DATA = b" " * 512  # about one record
_READ_ATTEMPTS = 16
"""A torn read needs a write to the same key while it reads; a few tries suffice."""


class FileStore:
    capabilities = Capabilities(shared_across_hosts=False, change_notification=False)

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        sync: Literal["filesystem", "file"] = "filesystem",
        max_batch: int = 128,
    ) -> None:
        self.root = Path(directory).absolute()
        self.description = f"file://{self.root}"
        self._records = self.root / RECORDS_DIR
        self._locks = self.root / LOCKS_DIR
        self._records.mkdir(parents=True, exist_ok=True)
        self._locks.mkdir(parents=True, exist_ok=True)
        # Kept open for the store's life: every file is opened relative to
        # them, and syncfs reports a writeback error only to descriptors that
        # were open when it happened (once to each).
        self._records_fd = os.open(self._records, os.O_RDONLY | os.O_DIRECTORY)
        self._locks_fd = os.open(self._locks, os.O_RDONLY | os.O_DIRECTORY)
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        self._floor = FloorFile(self._root_fd, self._locks_fd)
        committer = Committer(self._records_fd, self._locks_fd, syncfs=sync == "filesystem")
        self._commit = GroupCommit(committer, max_batch)
        self._closed = False

    @property
    def batches(self) -> int:
        """How many write batches this store committed (for tests)."""
        return self._commit.batches

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable("the file backend is closed", kind="the backend is closed")

    def _read_now(self, key: str) -> Versioned | None:
        self._check_open()
        name = file_name(key) + RECORD_SUFFIX
        for _ in range(_READ_ATTEMPTS):
            try:
                data = read_file(self._records_fd, name)
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise BackendUnavailable(f"cannot read lease file: {exc.strerror}") from exc
            try:
                fields, _ = decode(data)
            except Torn:
                continue
            record = LeaseRecord.from_storage(fields)
            return Versioned(record, record.revision)
        raise BackendUnavailable(
            f"lease file of {key!r} is damaged", kind="the lease's record is damaged"
        )

    def _check_present(self) -> None:
        """The open directory is still the one at its path (not removed, not replaced)."""
        try:
            here, held = os.stat(self._records), os.fstat(self._records_fd)
        except OSError as exc:
            raise BackendUnavailable(f"{self._records}: {exc.strerror}") from exc
        if (here.st_dev, here.st_ino) != (held.st_dev, held.st_ino):
            raise BackendUnavailable(
                f"{self._records} was removed or replaced",
                kind="the storage directory was removed or replaced",
            )

    def _scan_now(self, prefix: str, after: str | None, limit: int) -> list[LeaseRecord]:
        self._check_open()
        self._check_present()  # listing a removed directory would answer "no leases"
        hex_prefix = prefix.encode().hex()
        try:
            # A descriptor of its own: os.listdir(fd) reads through a dup of the
            # fd, which shares its position with every other listing in flight
            # (watch streams, the hub, /v1/leases run at once in threads), so
            # two listings of the shared fd skip and repeat each other's names.
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=self._records_fd)
            try:
                listing = os.listdir(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise BackendUnavailable(f"cannot list lease files: {exc.strerror}") from exc
        found: list[tuple[str, str]] = []  # (key, name), the name not yet checked
        for n in listing:
            if not n.endswith(RECORD_SUFFIX):
                continue
            stem = n[: -len(RECORD_SUFFIX)]
            if stem.startswith(LONG_PREFIX):
                key = key_of(stem)
            elif stem.startswith(hex_prefix):  # a hex name outside the prefix is skipped
                # Decoded cheaply here; checked by key_of only if it is listed.
                try:
                    key = bytes.fromhex(stem).decode()
                except ValueError:
                    continue
            else:
                continue
            if key is not None and key.startswith(prefix) and (after is None or key > after):
                found.append((key, stem))
        found.sort()
        out: list[LeaseRecord] = []
        for key, stem in found:
            if key_of(stem) != key:
                continue  # a stray file, not the name of its key
            got = self._read_now(key)
            if got is not None:
                out.append(got.record)
            if len(out) >= limit:
                break
        return out

    # -- RecordStore -------------------------------------------------------------

    async def read(self, key: str) -> Versioned | None:
        return self._read_now(key)

    async def write(self, key: str, record: LeaseRecord, expected: int | None) -> int:
        return await self._commit.write(
            key, file_name(key), encode(record), expected, record.revision
        )

    async def scan(self, prefix: str, after: str | None, limit: int) -> list[LeaseRecord]:
        return await anyio.to_thread.run_sync(self._scan_now, prefix, after, limit)

    async def delete(self, key: str, expected: int) -> None:
        self._check_open()
        await anyio.to_thread.run_sync(
            lambda: delete_record(
                self._records_fd, self._locks_fd, file_name(key), key=key, expected=expected
            )
        )

    async def read_floor(self) -> int:
        self._check_open()
        return self._floor.read()

    async def raise_floor(self, at_least: int) -> None:
        self._check_open()
        await anyio.to_thread.run_sync(self._floor.raise_to, at_least)

    async def ping(self) -> None:
        """The directory is in place and takes a new file's data (the readiness probe)."""
        self._check_open()
        await anyio.to_thread.run_sync(self._probe_now)

    def _probe_now(self) -> None:
        self._check_present()
        # What a new key's write needs: a new file, a block for its data, and
        # that data synced. Reading alone passes on a full or read-only disk,
        # and the spares are rewritten in place, so renewals may pass too.
        # Named outside the key space (no .json), per process; not kept.
        name = f"{PROBE_PREFIX}{os.getpid()}"
        try:
            fd = os.open(name, _PROBE_FLAGS, 0o644, dir_fd=self._records_fd)
            try:
                os.pwrite(fd, _PROBE_DATA, 0)
                os.fdatasync(fd)
            finally:
                os.close(fd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=self._records_fd)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot write {self._records}/{name}: {exc.strerror}"
            ) from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._commit.close()
        os.close(self._records_fd)
        os.close(self._locks_fd)
        os.close(self._root_fd)
