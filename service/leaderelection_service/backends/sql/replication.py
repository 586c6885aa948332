"""Whether the PostgreSQL primary the service writes to could lose acknowledged writes.

Example::

    row = await db.execute(QUERY, {}, tuple_row)     # (standbys, names, commit)
    replication_warning(*row[0])
    # 'the PostgreSQL primary streams to 1 standby asynchronously ...' or None

A lease write is acknowledged once PostgreSQL has committed it on the
primary. With streaming standbys that replicate asynchronously, a failover
promotes a standby that may not have received the last commits: an
acknowledged term disappears and its fencing token is granted again, which
breaks durability (I3), one leader (I1) and fencing (I2). Only synchronous
replication (``synchronous_standby_names`` naming the standbys and
``synchronous_commit`` at ``remote_write``, ``on`` or ``remote_apply``) makes
the commit wait for a standby, so this warns when the primary has standbys
but one of the two settings lets commits return first. ``current_setting``
is read on the service's own session: a ``synchronous_commit`` set for its
role, database or in the URL's ``options`` counts, as it does for its writes.
``docs/operations.md`` lists which HA set-ups keep the contract.

Rejected: refusing to serve. The set-up is the operator's to choose, a
standby can be attached or detached at any time, and a single primary
without standbys has nothing to fail over to; a warning at start, in the
log when it changes, and in ``/readyz`` tells without taking leases down.
"""

from __future__ import annotations

QUERY = (
    "SELECT (SELECT count(*) FROM pg_stat_replication),"
    " current_setting('synchronous_standby_names'),"
    " current_setting('synchronous_commit')"
)
"""The primary's streaming standbys and the two settings that make commits wait for them."""

_WAITS_FOR_STANDBY = ("remote_write", "on", "remote_apply")


def replication_warning(standbys: int, standby_names: str, commit: str) -> str | None:
    """Why acknowledged writes could be lost on failover, or None when they cannot be."""
    if standbys <= 0:
        return None
    many = f"{standbys} standby" if standbys == 1 else f"{standbys} standbys"
    if not standby_names.strip():
        why = "synchronous_standby_names is empty"
    elif commit not in _WAITS_FOR_STANDBY:
        why = f"synchronous_commit is {commit}"
    else:
        return None
    return (
        f"the PostgreSQL primary streams to {many} asynchronously ({why}): "
        "after a failover to a standby, acknowledged leases can be lost and fencing "
        "tokens granted twice; replicate synchronously (see docs/operations.md)"
    )
