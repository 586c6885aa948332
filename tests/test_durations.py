"""The one duration parser of the command line (``commands/durations.py``)."""

from __future__ import annotations

import argparse

import pytest

from leaderelection_service.commands.durations import duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("0", 0.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s4ms", 3723.004),
        (" 5s ", 5.0),
    ],
)
def test_accepted_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-5", "5d", "1m 30s", "5sec", "1e3", "nan", "inf", "2x"])
def test_refused_forms_name_the_accepted_ones(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad duration .*e\.g\. 90, 1\.5s, 2m"):
        parse_duration(text)
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)
