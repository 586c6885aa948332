"""The leaderelection lease service.

Layers, each importing only the ones below it::

    api/, app.py        HTTP: routes, error mapping, auth, dashboard
    lease_rules.py      the lease rules (acquire / renew / release, tokens)
    storage.py          the backend protocols
    backends/           file, SQL and GCS stores, chosen by URL (registry.py)

Importing this package pulls in no server library; ``app`` and ``backends`` do.
"""

from importlib.metadata import PackageNotFoundError, version

# One version for everything: the ``version`` in pyproject.toml, as installed.
# ``/healthz``, ``leaderelection --version`` and the OpenAPI document all read it here.
try:
    __version__ = version("leaderelection")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
