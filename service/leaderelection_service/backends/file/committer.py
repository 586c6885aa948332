"""One batch of the file backend's writes, committed with one sync: lock, check, write, swap.

Example::

    committer = Committer(records_fd, locks_fd)
    batch = [Pending("cron", "63726f6e", encode(record), expected=3, revision=4)]
    committer.commit(batch)  # in the worker thread (``group_commit.py`` gathers the batch)
    batch[0].error           # None: durable; WriteConflict, BackendUnavailable: not written

One batch, in the worker thread (``Committer.commit``):

1. ``flock`` every key's lock file, in the order of the keys' file names, so
   two processes' batches never wait on each other in a cycle (the lock files
   are the ones every process on the host uses);
2. read each key's record and compare its revision with the expected one: a
   mismatch fails that write alone (``WriteConflict``), the others go on;
3. write each new record into its key's spare file, in place;
4. make all of that data durable with one ``syncfs(2)`` on the directory's
   filesystem, or with one ``fdatasync`` per spare (``--file-sync file``, and
   wherever ``syncfs`` is missing);
5. exchange each spare with its record (``renameat2(RENAME_EXCHANGE)``,
   atomic: a reader opens the old record or the new one, whole). A key with
   no record yet, or with one written by an earlier version of the service,
   gets ``os.replace`` instead;
6. ``fsync`` the directory once: every exchange is durable (durability (I3));
7. unlock; the event loop then answers each caller.

Nothing is renamed before its data is durable, so a crash leaves each record
as it was or as it was written, never empty.

A failure of one write's own step (its lock file, its record, its spare, its
``fdatasync``, its exchange) fails that write alone with
``BackendUnavailable``, and leaves its record as it was; the other writes of
the batch go on and are durable when answered. Otherwise one bad write would
fail every write that happened to share its batch: another tenant's renewals
(isolation, I4). A failure common to the batch fails every write still going:
``syncfs`` (step 4), which cannot say whose data it lost, leaves every record
as it was; the directory's ``fsync`` (step 6) comes after the exchanges, so
some records may show the new state, as when a database commits and the
answer is lost.

Why a spare rewritten in place, not a new temporary file renamed over the
record: a new file's blocks are allocated, and the replaced record's blocks
freed, on every write. On the ext4 disk this was measured on (mounted with
``discard``), freeing one block takes about 1.3 ms inside ``rename`` or
``unlink``, one at a time: a batch of 64 renames took 41 ms, against 0.5 ms
for 64 exchanges. Rewriting a former record in place allocates and frees
nothing. The cost is a reader that opened the record just before it became
the spare, and reads it while the next write rewrites it: the format
checksums every record (``encoding.py``) so that such a reader reads again.

Why ``syncfs`` by default: it flushes the disk once per batch, where
``fdatasync`` flushes it once per file. 64 rewritten spares took 0.36 ms with
one ``syncfs``, 3.5 ms with 64 ``fdatasync`` in a row and 3.1 ms from 16
threads at once (32.8 ms against 0.9 ms when the disk was busier). But
``syncfs`` also writes out every page other programs left dirty on that
filesystem: after another program wrote 400 MB without syncing, one batch's
``syncfs`` took 170 ms while ``fdatasync`` stayed at 2-3 ms. Hence
``--file-sync file`` for a directory on a filesystem shared with heavy writers.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from leaderelection_service.backends.file import syscalls
from leaderelection_service.backends.file.encoding import Torn, decode, padded
from leaderelection_service.backends.file.names import LOCK_SUFFIX, RECORD_SUFFIX, SPARE_SUFFIX
from leaderelection_service.lease_errors import BackendUnavailable, WriteConflict

_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
_SPARE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC


@dataclass(eq=False)
class Pending:
    """One write: the record's bytes, for ``key`` whose file name is ``name``."""

    key: str
    name: str
    data: bytes
    expected: int | None
    revision: int
    error: BaseException | None = field(default=None)
    """This write's own outcome, set by the batch (a conflict, an unreadable record)."""


class Committer:
    """Runs one batch (steps 1-7 above), in the one worker thread."""

    def __init__(self, records_fd: int, locks_fd: int, *, syncfs: bool = True) -> None:
        self.records_fd = records_fd
        self.locks_fd = locks_fd
        self.use_syncfs = syncfs and syscalls.HAVE_SYNCFS
        self.use_exchange = syscalls.HAVE_EXCHANGE

    def commit(self, batch: Sequence[Pending]) -> None:
        """Set each item's ``error`` or leave it None (written); raise to fail them all."""
        locks: list[int] = []
        try:
            ordered = sorted(batch, key=lambda p: p.name)
            locked = []
            for p in ordered:  # 1.
                try:
                    fd = os.open(p.name + LOCK_SUFFIX, _LOCK_FLAGS, 0o644, dir_fd=self.locks_fd)
                    locks.append(fd)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError as exc:
                    p.error = _failed("cannot lock lease file", exc)
                    continue
                locked.append(p)
            staged = [(p, exchange) for p in locked if (exchange := self._check(p)) is not None]
            if staged:
                self._write(staged)
        except OSError as exc:
            raise _failed("cannot write lease files", exc) from exc
        finally:
            for fd in locks:
                os.close(fd)  # 7. closing drops the flock

    def _check(self, p: Pending) -> bool | None:
        """2. None when ``p`` may not be written; else whether its record may be exchanged."""
        try:
            data = syscalls.read_file(self.records_fd, p.name + RECORD_SUFFIX)
        except FileNotFoundError:
            revision, checked = None, False
        except OSError as exc:
            p.error = _failed("cannot read lease file", exc)
            return None
        else:
            try:
                fields, checked = decode(data)
                revision = int(fields["revision"])
            except (Torn, KeyError, TypeError, ValueError):
                # Under the lock nothing rewrites the record: it is damaged.
                p.error = BackendUnavailable(
                    f"lease file of {p.key!r} is damaged", kind="the lease's record is damaged"
                )
                return None
        if revision != p.expected:
            p.error = WriteConflict(p.key)
            return None
        # A record of an earlier version may be read by that version's
        # processes, which do not check sums: it never becomes a spare.
        return checked and self.use_exchange

    def _write(self, staged: list[tuple[Pending, bool]]) -> None:
        """Steps 3-6. A step of one file that fails fails that write alone; the
        filesystem's sync and the directory's fsync fail every write still going."""
        written: list[tuple[Pending, bool, int]] = []
        try:
            for p, exchange in staged:  # 3.
                try:
                    fd = os.open(p.name + SPARE_SUFFIX, _SPARE_FLAGS, 0o644, dir_fd=self.records_fd)
                except OSError as exc:
                    p.error = _failed("cannot write lease file", exc)
                    continue
                written.append((p, exchange, fd))
                try:
                    syscalls.write_all(fd, padded(p.data, os.fstat(fd).st_size))
                except OSError as exc:
                    p.error = _failed("cannot write lease file", exc)
            self._sync_data([(p, fd) for p, _, fd in written if p.error is None])  # 4.
        finally:
            for _, _, fd in written:
                os.close(fd)
        renamed = False
        for p, exchange, _ in written:  # 5.
            if p.error is not None:
                continue
            spare, record = p.name + SPARE_SUFFIX, p.name + RECORD_SUFFIX
            try:
                if not (exchange and self._exchange(spare, record)):
                    os.replace(
                        spare, record, src_dir_fd=self.records_fd, dst_dir_fd=self.records_fd
                    )
            except OSError as exc:
                p.error = _failed("cannot rename lease file", exc)
                continue
            renamed = True
        if renamed:
            os.fsync(self.records_fd)  # 6.

    def _sync_data(self, files: list[tuple[Pending, int]]) -> None:
        if not files:
            return
        if self.use_syncfs:
            try:
                syscalls.syncfs(self.records_fd)
                return
            except OSError as exc:
                if exc.errno not in syscalls.NOT_SUPPORTED:
                    raise
                self.use_syncfs = False
        for p, fd in files:
            try:
                os.fdatasync(fd)
            except OSError as exc:  # this file's data alone is not durable
                p.error = _failed("cannot write lease file", exc)

    def _exchange(self, a: str, b: str) -> bool:
        """Swap two names atomically; False where the filesystem cannot."""
        try:
            syscalls.exchange(self.records_fd, a, b)
        except OSError as exc:
            if exc.errno not in syscalls.NOT_SUPPORTED:
                raise
            self.use_exchange = False
            return False
        return True


def _failed(what: str, exc: OSError) -> BackendUnavailable:
    """A write's own failure; the OSError stays its cause (the answer names its kind)."""
    error = BackendUnavailable(f"{what}: {exc.strerror}")
    error.__cause__ = exc
    return error
