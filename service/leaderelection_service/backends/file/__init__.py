"""The file backend: one JSON file per key in a directory on one host.

Example::

    from leaderelection_service.backends.file import FileStore

    store = FileStore("/var/lib/leaderelection")

See ``store.py`` for how it reads and lists, ``commit.py`` for how it writes.
"""

from leaderelection_service.backends.file.store import FileStore

__all__ = ["FileStore"]
