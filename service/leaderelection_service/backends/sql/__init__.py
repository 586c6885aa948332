"""The SQL backend: PostgreSQL, SQLite and MariaDB behind one ``SqlLeases``.

Example::

    from leaderelection_service.backends.sql import SqlLeases

    leases = SqlLeases("sqlite:////var/lib/leases.db")

See ``backend.py`` for how it runs.
"""

from leaderelection_service.backends.sql.backend import SqlLeases, migrate_url

__all__ = ["SqlLeases", "migrate_url"]
