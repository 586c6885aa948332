"""Rules for PostgreSQL in high availability, without a server: the multi-host
URL reaches libpq whole, when the replication warning is due, and how
readiness reports it (a unit test on a stand-in backend)."""

from __future__ import annotations

import logging

import pytest
from psycopg.conninfo import conninfo_to_dict

from leaderelection_service.backends.sql.engine import engine_url
from leaderelection_service.backends.sql.postgresql import libpq_conninfo
from leaderelection_service.backends.sql.replication import replication_warning
from leaderelection_service.lease_errors import BackendUnavailable
from leaderelection_service.readiness import Readiness


def conninfo(url: str) -> dict[str, object]:
    return conninfo_to_dict(libpq_conninfo(engine_url(url)))


def test_a_multi_host_url_reaches_libpq_as_host_and_port_lists() -> None:
    url = "postgresql://u:s%40cret@db1:5432,db2:5433/leases?target_session_attrs=read-write"
    assert conninfo(url) == {
        "user": "u",
        "password": "s@cret",
        "dbname": "leases",
        "host": "db1,db2",
        "port": "5432,5433",
        "target_session_attrs": "read-write",
    }
    # The password stays out of what the log and /readyz are built from.
    assert "s@cret" not in engine_url(url).render_as_string(hide_password=True)


def test_sqlalchemys_multi_host_form_and_single_hosts_read_the_same() -> None:
    assert conninfo("postgres://u@/leases?host=db1:5432&host=db2")["host"] == "db1,db2"
    assert conninfo("postgres://u@/leases?host=db1:5432&host=db2")["port"] == "5432,"
    assert conninfo("postgresql://u@db1,db2/leases") == {"user": "u", "dbname": "leases",
                                                        "host": "db1,db2"}  # fmt: skip
    assert conninfo("postgresql://u@db:6432/leases?options=-c%20a%3Db") == {
        "user": "u", "dbname": "leases", "host": "db", "port": "6432", "options": "-c a=b",
    }  # fmt: skip
    assert conninfo("postgresql://u@/leases?host=/run/postgresql")["host"] == "/run/postgresql"


def test_ipv6_literals_in_a_host_list_are_refused_with_a_way_out() -> None:
    with pytest.raises(ValueError, match="IPv6"):
        engine_url("postgresql://u@[::1]:5432,[::1]:5433/leases")


@pytest.mark.parametrize(
    ("standbys", "names", "commit", "why"),
    [
        (1, "", "on", "synchronous_standby_names is empty"),
        (2, "*", "local", "synchronous_commit is local"),
        (1, "ANY 1 (s1, s2)", "off", "synchronous_commit is off"),
    ],
)
def test_standbys_without_synchronous_commit_are_warned_about(
    standbys: int, names: str, commit: str, why: str
) -> None:
    warning = replication_warning(standbys, names, commit)
    assert warning is not None and why in warning and "docs/operations.md" in warning


@pytest.mark.parametrize(
    ("standbys", "names", "commit"),
    [
        (0, "", "on"),
        (0, "", "off"),
        (1, "*", "on"),
        (1, "FIRST 1 (s1)", "remote_apply"),
        (3, "s1", "remote_write"),
    ],
)
def test_no_standbys_or_synchronous_replication_needs_no_warning(
    standbys: int, names: str, commit: str
) -> None:
    assert replication_warning(standbys, names, commit) is None


class WarningBackend:
    """Pings that succeed or fail, and a ``warning`` set by the test."""

    def __init__(self) -> None:
        self.pings = 0
        self.failing = False
        self.warning: str | None = None

    async def ping(self) -> None:
        self.pings += 1
        if self.failing:
            raise BackendUnavailable("down")


async def test_readiness_logs_a_warning_when_it_appears_and_keeps_no_start_up_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    backend = WarningBackend()
    backend.warning = "replicates asynchronously"
    readiness = Readiness(backend, ttl=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="leaderelection"):
        await readiness.at_start()
        assert readiness.warning == "replicates asynchronously"
        backend.failing = True  # lost right after start: the next probe must see it
        assert isinstance(await readiness.check(), BackendUnavailable)
        assert readiness.warning == "replicates asynchronously"  # kept while down
        backend.failing, now[0] = False, 2.0
        assert await readiness.check() is None  # same warning: not logged again
        backend.warning, now[0] = None, 4.0
        assert await readiness.check() is None and readiness.warning is None
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("WARNING", "backend: replicates asynchronously"),
        ("INFO", "backend: the earlier warning no longer holds"),
    ]
    assert backend.pings == 4
