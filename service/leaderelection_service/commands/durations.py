"""Durations on the command line: ``90``, ``1.5s``, ``250ms``, ``2m``, ``1h``, ``1m30s``.

Example::

    parser.add_argument("--timeout", type=duration, metavar="DURATION")
    duration("90")      # 90.0
    duration("1.5s")    # 1.5
    duration("1m30s")   # 90.0
    duration("2x")      # argparse.ArgumentTypeError: bad duration '2x' (…)

A bare number is seconds, as every other time flag of ``leaderelection`` is;
a suffixed one reads as in Go's ``time.ParseDuration`` (``ms``, ``s``, ``m``,
``h``, several parts summed), the spelling etcd, Consul and Kubernetes users
type into their tools. Every command that takes a duration uses this one
parser, so they all accept the same forms. Negative durations are refused.

Rejected: ``datetime.timedelta`` or ISO 8601 (``PT1M30S``), which nobody types
in a crontab; days (``d``), whose length is not fixed across a DST change.
"""

from __future__ import annotations

import argparse
import math
import re

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
FORMS = "seconds, or a number with ms, s, m or h, e.g. 90, 1.5s, 2m, 1m30s"


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ``ValueError`` naming the accepted forms when it is not one."""
    s = text.strip()
    if _NUMBER.fullmatch(s):
        seconds = float(s)
    else:
        parts = list(_PART.finditer(s))
        if not parts or "".join(p.group(0) for p in parts) != s:
            raise ValueError(f"bad duration {text!r} ({FORMS})")
        seconds = sum(float(p.group(1)) * UNITS[p.group(2)] for p in parts)
    if not math.isfinite(seconds):
        raise ValueError(f"bad duration {text!r} ({FORMS})")
    return seconds


def duration(text: str) -> float:
    """``parse_duration`` as an argparse ``type=`` (a bad value is a usage error, status 2)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
