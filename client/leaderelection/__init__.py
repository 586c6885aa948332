"""leaderelection: the Python client of the leaderelection lease service.

Example::

    from leaderelection import Config, LeaderElector, LeaseClient

    client = LeaseClient("http://127.0.0.1:8080")
    elector = LeaderElector(client, "cron", config=Config(term=8, renew=4, retry=2))
    elector.on_elected = lambda me, cancel: print(me, "elected")
    elector.on_ousting = lambda me, cancel: print(me, "ousting")
    with elector:                      # start(); on exit stop(), which releases
        elector.wait_for_leadership()
        print("leading with fencing token", elector.lease.fencing_token)

``LeaseClient`` / ``AsyncLeaseClient`` speak the HTTP API; ``LeaderElector`` /
``AsyncLeaderElector`` run the acquire/renew loop and step down at a local,
monotonic deadline. Imports ``httpx`` alone. The errors are drawn in
``leaderelection.errors``.
"""

from leaderelection._election import Leadership
from leaderelection._version import __version__
from leaderelection.async_elector import AsyncLeaderElector
from leaderelection.client import AsyncLeaseClient, LeaseClient
from leaderelection.config import Config
from leaderelection.elector import LeaderElector
from leaderelection.errors import (
    BackendUnavailable,
    Forbidden,
    InternalError,
    InvalidRequest,
    LeaseError,
    LeaseHeld,
    LeaseLost,
    LeaseNotFound,
    LimitMismatch,
    RequestTimeout,
    ServiceError,
    TooManyRequests,
    TransportError,
    Unauthorized,
)
from leaderelection.lease import Lease, Slot
from leaderelection.watch import AsyncWatch, LeaseEvent, Watch

__all__ = [
    "AsyncLeaderElector",
    "AsyncLeaseClient",
    "AsyncWatch",
    "BackendUnavailable",
    "Config",
    "Forbidden",
    "InternalError",
    "InvalidRequest",
    "LeaderElector",
    "Leadership",
    "Lease",
    "LeaseClient",
    "LeaseError",
    "LeaseEvent",
    "LeaseHeld",
    "LeaseLost",
    "LeaseNotFound",
    "LimitMismatch",
    "RequestTimeout",
    "ServiceError",
    "Slot",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "Watch",
    "__version__",
]
