"""The file backend: one JSON file per key in a directory on one host.

Example::

    from leaderelection_service.backends.file import FileStore

    store = FileStore("/var/lib/leaderelection")

Modules: ``store.py`` (``FileStore``: reads, listings, the readiness probe),
``group_commit.py`` (writes gathered into batches), ``committer.py`` (one
batch: lock, check, write, sync, swap), ``names.py`` (the layout and each
key's file name), ``encoding.py`` (a record's bytes, with a checksum),
``syscalls.py`` (``syncfs``, ``renameat2``).
"""

from leaderelection_service.backends.file.store import FileStore

__all__ = ["FileStore"]
