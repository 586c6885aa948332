"""The front door's rules alone: which connection goes at the cap, how many fit the file limit.

The protocol that applies them to real sockets is tested in test_front_door.py.
"""

from __future__ import annotations

import pytest

from leaderelection_service.connections import (
    FILE_RESERVE,
    IDLE_TIERS,
    ConnectionTable,
    connection_budget,
)


def served(table: ConnectionTable[str], conn: str, requests: int = 1) -> None:
    for _ in range(requests):
        table.request_started(conn)
        table.request_done(conn)


def test_under_the_cap_nothing_is_evicted() -> None:
    table: ConnectionTable[str] = ConnectionTable(cap=3)
    assert [table.opened(c) for c in "abc"] == [[], [], []]
    assert len(table) == 3


def test_the_oldest_connection_that_never_completed_a_request_goes_first() -> None:
    table: ConnectionTable[str] = ConnectionTable(cap=3)
    table.opened("leader")
    served(table, "leader")
    table.opened("flood-1")
    table.opened("flood-2")
    assert table.opened("flood-3") == ["flood-1"]
    assert table.opened("newcomer") == ["flood-2"]
    assert table.counts() == {"fresh": 2, "idle": 1, "busy": 0}


def test_a_request_in_progress_is_never_evicted_and_the_newcomer_goes_when_all_are_busy() -> None:
    table: ConnectionTable[str] = ConnectionTable(cap=2)
    for c in ("a", "b"):
        table.opened(c)
        table.request_started(c)
    assert table.opened("c") == ["c"]
    assert table.counts() == {"fresh": 0, "idle": 0, "busy": 2}


def test_idle_connections_go_fewest_requests_first_then_longest_idle() -> None:
    table: ConnectionTable[str] = ConnectionTable(cap=3)
    table.opened("leader")
    served(table, "leader", requests=IDLE_TIERS + 5)
    table.opened("healthz-1")
    served(table, "healthz-1")
    table.opened("healthz-2")
    served(table, "healthz-2")
    # Both healthz connections were idle less long than the leader, yet go first.
    assert table.opened("x") == ["healthz-1"]
    served(table, "x", requests=2)
    assert table.opened("y") == ["healthz-2"]
    served(table, "y", requests=2)
    assert table.opened("z") == ["x"]  # two requests each: the longer idle goes
    assert "leader" not in table.opened("w") + table.opened("v")  # fresh ones go first


def test_a_closed_connection_leaves_the_table() -> None:
    table: ConnectionTable[str] = ConnectionTable(cap=2)
    table.opened("a")
    table.request_started("a")
    table.closed("a")
    table.closed("a")  # twice: no error
    table.request_done("a")  # a late answer of a closed connection changes nothing
    assert len(table) == 0
    assert table.opened("b") == table.opened("c") == []


def test_the_cap_fits_the_file_limit_with_the_backlog_and_reserve() -> None:
    assert connection_budget(1 << 20, 4096, explicit=False).cap == 4096
    small = connection_budget(1024, 4096, explicit=False)
    assert small.clamped
    assert small.cap + small.backlog + FILE_RESERVE == 1024
    assert small.backlog == 128


def test_an_explicit_cap_over_the_file_limit_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match=r"max_connections \(4096\).*open file limit \(1024"):
        connection_budget(1024, 4096, explicit=True)
    assert connection_budget(1024, 800, explicit=True).cap == 800
    with pytest.raises(ValueError, match="no room"):
        connection_budget(64, 10, explicit=False)
