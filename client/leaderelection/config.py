"""``Config``: the election's timing, checked when it is made.

Example::

    Config()                                   # term 15 s, renew every 5 s, retry every 2 s
    Config(term=8, renew=4, retry=2)           # the Go library's example
    Config(term=timedelta(seconds=30), renew=10, retry=3, margin=2)

Every field is seconds (a number or a ``timedelta``):

- ``term``: the ttl each acquire and renew asks for: how long a grant lasts
  without renewal. Default 15. A duration, named as in the Go library this
  API mirrors; everywhere else "term" is a period of leadership
  (docs/contract.md, "Words").
- ``renew``: how long after a successful acquire or renew the leader sends the
  next renew. Default 5.
- ``retry``: how long a follower waits between acquire attempts (and the upper
  bound of the back-off between failed renew attempts). Jitter only shortens
  it. Default 2.
- ``margin``: the safety margin. The leader's local deadline is
  ``monotonic time the acquire/renew was sent + term - margin``; it covers
  clock-rate drift and the time your code needs to notice ``on_ousting``.
  Default ``term / 10``.
- ``timeout``: the HTTP timeout of one attempt. Default
  ``min((term - margin - renew) / 3, 10)``, so that at least two renew attempts
  (with a pause between them) fit between the first renew and the deadline.

The constructor raises ``ValueError`` naming the broken rule, never clamps:

1. ``0 < retry``
2. ``0 < renew < term``
3. ``0 <= margin < term``
4. ``renew + 2 * timeout <= term - margin`` (two renew attempts fit before the
   deadline), with ``timeout >= 0.05``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

Seconds = float | int | timedelta

MIN_TIMEOUT = 0.05
"""Shortest HTTP timeout per attempt that can work at all, seconds."""
MAX_DERIVED_TIMEOUT = 10.0
"""The derived per-attempt timeout never exceeds this, seconds."""


def seconds(name: str, value: Seconds) -> float:
    """``value`` as a finite float number of seconds, or a ``ValueError`` naming ``name``."""
    if isinstance(value, timedelta):
        out = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be seconds (a number or a timedelta), got {value!r}")
    else:
        out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return out


@dataclass(frozen=True, init=False)
class Config:
    """Term, renew and retry intervals, safety margin and HTTP timeout, in seconds."""

    term: float
    renew: float
    retry: float
    margin: float
    timeout: float

    def __init__(
        self,
        term: Seconds = 15.0,
        renew: Seconds = 5.0,
        retry: Seconds = 2.0,
        *,
        margin: Seconds | None = None,
        timeout: Seconds | None = None,
    ) -> None:
        t = seconds("term", term)
        r = seconds("renew", renew)
        y = seconds("retry", retry)
        m = t / 10 if margin is None else seconds("margin", margin)
        if not y > 0:
            raise ValueError(f"rule 0 < retry broken: retry={y:g}")
        if not 0 < r < t:
            raise ValueError(f"rule 0 < renew < term broken: renew={r:g}, term={t:g}")
        if not 0 <= m < t:
            raise ValueError(f"rule 0 <= margin < term broken: margin={m:g}, term={t:g}")
        window = t - m - r
        if timeout is None:
            o = min(window / 3, MAX_DERIVED_TIMEOUT)
            if o < MIN_TIMEOUT:
                raise ValueError(
                    "rule renew + 2 * timeout <= term - margin (two renew attempts fit before "
                    f"the deadline) leaves no room: term - margin - renew = {t:g} - {m:g} - "
                    f"{r:g} = {window:g} s, and the derived timeout (that / 3) must be at "
                    f"least {MIN_TIMEOUT:g} s; shorten renew or margin, or lengthen term"
                )
        else:
            o = seconds("timeout", timeout)
            if o < MIN_TIMEOUT:
                raise ValueError(f"rule timeout >= {MIN_TIMEOUT:g} broken: timeout={o:g}")
            if r + 2 * o > t - m:
                raise ValueError(
                    "rule renew + 2 * timeout <= term - margin (two renew attempts fit before "
                    f"the deadline) broken: {r:g} + 2 * {o:g} = {r + 2 * o:g} > "
                    f"{t:g} - {m:g} = {t - m:g}"
                )
        object.__setattr__(self, "term", t)
        object.__setattr__(self, "renew", r)
        object.__setattr__(self, "retry", y)
        object.__setattr__(self, "margin", m)
        object.__setattr__(self, "timeout", o)
