"""The leaderelection lease service.

Layers, each importing only the ones below it::

    api/, app.py        HTTP: routes, error mapping, auth, dashboard
    leases.py           the lease rules (acquire / renew / release, tokens)
    storage.py          the backend protocols
    backends/           file, SQL and GCS stores, chosen by URL (registry.py)

Importing this package pulls in no server library; ``app`` and ``backends`` do.
"""

__version__ = "0.1.0"
