"""What a set of watch streams covers, and what they have read so far.

Example::

    coverage(subs)      # (["jobs."], ["cron"]): every key a stream watches
    read_ranges(subs)   # ([("jobs.", "jobs.0999"), ("", None)], ["cron"])
    contains(coverage(subs), "jobs.a")   # True

``read_ranges`` is what the hub lists when the backend cannot say which keys
changed: each stream's prefix up to the key its replay has reached (all of it
once replayed). Listing the whole of every watched prefix instead was
rejected: a stream still replaying a million keys would make the hub read
(and remember) keys no stream has been sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from leaderelection_service.subscription import Subscription

Coverage = tuple[list[str], list[str]]
"""(prefixes, keys) the subscribers watch."""
Range = tuple[str, str | None]
"""A prefix and the last key of it to read (None: all of it)."""


def contains(cover: Coverage, key: str) -> bool:
    prefixes, keys = cover
    return key in keys or under(prefixes, key)


def under(prefixes: Iterable[str], key: str) -> bool:
    return any(key.startswith(p) for p in prefixes)


def outermost(prefixes: Iterable[str]) -> list[str]:
    """The prefixes none of the others covers."""
    out: list[str] = []
    for p in sorted(set(prefixes)):
        if not under(out, p):
            out.append(p)
    return out


def coverage(subs: Iterable[Subscription]) -> Coverage:
    """(prefixes, keys): the smallest set that covers every subscriber."""
    subs = list(subs)
    prefixes = outermost(s.prefix for s in subs if s.key is None)
    keys = sorted({s.key for s in subs if s.key is not None and not under(prefixes, s.key)})
    return prefixes, keys


def read_ranges(subs: Iterable[Subscription]) -> tuple[list[Range], list[str]]:
    """What the streams have read: (prefix, up to key) ranges, and single keys."""
    subs = list(subs)
    whole = outermost(s.prefix for s in subs if s.key is None and s.replay_done is not None)
    upto: dict[str, str] = {}
    keys: set[str] = set()
    for s in subs:
        if s.key is not None:
            if s.passed(s.key) and not under(whole, s.key):
                keys.add(s.key)
        elif s.replay_done is None and s.upto is not None and not under(whole, s.prefix):
            upto[s.prefix] = max(upto.get(s.prefix, s.upto), s.upto)
    out: list[Range] = [(p, None) for p in whole]
    out.extend(sorted(upto.items()))
    return out, sorted(keys)
