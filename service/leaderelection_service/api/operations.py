"""One lease operation (acquire, renew, release) as the routes and the hot path perform it.

Example::

    view = await perform("renew", key, RenewBody(holder="a", fencing_token=7), backend, settings)

The holder, ttl and value checks and the backend call are written here once: the
routes of ``api/leases.py`` and the hot path of ``api/hot.py`` both call
``perform``, so what a request does cannot differ with the way it came in
(they had drifted: the renew route checked the ttl before the holder, the hot
path the holder first; both now check the holder first). A refusal leaves as
a ``LeaseError``, and ``answers.lease_error_response`` turns it into the
answer, for the framework's handler and for the hot path alike.

Rejected: a method per operation on a class shared by both callers; the three
operations differ in two lines, and one function with the operation's name
keeps the hot path's dispatch a dictionary lookup.
"""

from __future__ import annotations

from typing import Any

from leaderelection_service.api.deps import check_holder, check_ttl, check_value
from leaderelection_service.auth import OPEN, ApiToken
from leaderelection_service.records import LeaseView
from leaderelection_service.settings import Settings
from leaderelection_service.storage import LeaseBackend

OPERATIONS = ("acquire", "renew", "release")


async def perform(
    operation: str,
    key: str,
    body: Any,
    backend: LeaseBackend,
    settings: Settings,
    who: ApiToken = OPEN,
) -> LeaseView:
    """Check ``body`` (``AcquireBody``, ``RenewBody`` or ``ReleaseBody``), call the backend.

    ``who`` matters to acquire only: an admin token presented (not the open
    service's caller, who presents none) may change a held semaphore key's limit.
    """
    holder = check_holder(body.holder)
    if operation == "acquire":
        ttl = check_ttl(body.ttl, settings)
        value = check_value(body.value)
        admin = who is not OPEN and who.may_administer(key)
        if (body.limit is None or body.limit == 1) and not admin:
            return await backend.acquire(key, holder, ttl, value)  # a plain lease, as before
        return await backend.acquire(key, holder, ttl, value, body.limit or 1, admin)
    if operation == "renew":
        ttl = None if body.ttl is None else check_ttl(body.ttl, settings)
        value = check_value(body.value)
        return await backend.renew(key, holder, body.fencing_token, ttl, value, bool(body.announce))
    if operation == "release":
        return await backend.release(key, holder, body.fencing_token)
    raise ValueError(f"not a lease operation: {operation!r}")
