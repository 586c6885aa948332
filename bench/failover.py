"""Section 3, failover (needs the client's LeaderElector)."""

from __future__ import annotations


def unavailable_reason() -> str | None:
    try:
        from leaderelection import LeaderElector  # noqa: F401
    except ImportError:
        return "the client has no LeaderElector in this version"
    return None
