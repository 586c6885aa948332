"""File backend: one JSON file per key in a directory on one host.

Example::

    store = FileStore("/var/lib/leaderelection")
    leases = CasLeases(store)

URL ``file:///var/lib/leaderelection``. Every write is a compare-and-set:

1. take an exclusive ``fcntl.flock`` on the key's lock file (shared by every
   process on the host, so ``--workers 2`` and several services are safe);
2. read the current record and compare its revision with the expected one;
3. write the new record to a temporary file, ``fsync`` it, ``os.replace`` it
   over the record file, ``fsync`` the directory (S3: durable before the
   answer);
4. release the lock.

Reads take no lock: ``os.replace`` is atomic, so a reader sees the old or the
new file, whole. File names are the key's UTF-8 bytes in hex (never a path
built from raw input); hex keeps the keys' byte order, so a sorted directory
listing is a sorted key listing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path

import anyio.to_thread

from leaderelection_service.errors import BackendUnavailable, WriteConflict
from leaderelection_service.records import LeaseRecord, valid_key
from leaderelection_service.storage import Capabilities, Versioned

_SUFFIX = ".json"
_LOCK_SUFFIX = ".lock"


def _name(key: str) -> str:
    if not valid_key(key):  # the HTTP layer checked already; never trust it here
        raise ValueError(f"invalid key {key!r}")
    return key.encode().hex()


class FileStore:
    capabilities = Capabilities(shared_across_hosts=False, change_notification=False)

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.root = Path(directory).absolute()
        self.description = f"file://{self.root}"
        self._records = self.root / "leases"
        self._locks = self.root / "locks"
        self._records.mkdir(parents=True, exist_ok=True)
        self._locks.mkdir(parents=True, exist_ok=True)

    # -- sync primitives, run in worker threads -------------------------------

    def _read_sync(self, key: str) -> Versioned | None:
        path = self._records / (_name(key) + _SUFFIX)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackendUnavailable(f"cannot read lease file: {exc.strerror}") from exc
        record = LeaseRecord.from_storage(json.loads(data))
        return Versioned(record, record.revision)

    def _write_sync(self, key: str, record: LeaseRecord, expected: int | None) -> int:
        name = _name(key)
        try:
            lock_fd = os.open(self._locks / (name + _LOCK_SUFFIX), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BackendUnavailable(f"cannot open lock file: {exc.strerror}") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            cur = self._read_sync(key)
            if (cur.version if cur else None) != expected:
                raise WriteConflict(key)
            payload = json.dumps(record.to_storage(), separators=(",", ":")).encode()
            self._replace(self._records / (name + _SUFFIX), payload)
            return record.revision
        except OSError as exc:
            raise BackendUnavailable(f"cannot write lease file: {exc.strerror}") from exc
        finally:
            os.close(lock_fd)  # closing drops the flock

    def _replace(self, path: Path, payload: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self._records, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self._records, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _scan_sync(self, prefix: str, after: str | None, limit: int) -> list[LeaseRecord]:
        hex_prefix = prefix.encode().hex()
        hex_after = after.encode().hex() if after else None
        try:
            listing = os.listdir(self._records)
        except OSError as exc:
            raise BackendUnavailable(f"cannot list lease files: {exc.strerror}") from exc
        names = sorted(
            n[: -len(_SUFFIX)] for n in listing if n.endswith(_SUFFIX) and n.startswith(hex_prefix)
        )
        out: list[LeaseRecord] = []
        for name in names:
            if hex_after is not None and name <= hex_after:
                continue
            got = self._read_sync(bytes.fromhex(name).decode())
            if got is not None:
                out.append(got.record)
            if len(out) >= limit:
                break
        return out

    # -- RecordStore -------------------------------------------------------------

    async def read(self, key: str) -> Versioned | None:
        return await anyio.to_thread.run_sync(self._read_sync, key)

    async def write(self, key: str, record: LeaseRecord, expected: int | None) -> int:
        return await anyio.to_thread.run_sync(self._write_sync, key, record, expected)

    async def scan(self, prefix: str, after: str | None, limit: int) -> list[LeaseRecord]:
        return await anyio.to_thread.run_sync(self._scan_sync, prefix, after, limit)

    async def ping(self) -> None:
        def check() -> None:
            if not os.access(self._records, os.W_OK | os.X_OK):
                raise BackendUnavailable(f"{self._records} is not writable")

        await anyio.to_thread.run_sync(check)

    async def close(self) -> None:
        return None
