"""``Config`` checks the contract's timing rules and names the one broken."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leaderelection import Config


def test_defaults_are_documented_values() -> None:
    cfg = Config()
    assert (cfg.term, cfg.renew, cfg.retry) == (15.0, 5.0, 2.0)
    assert cfg.margin == pytest.approx(1.5)
    assert cfg.timeout == pytest.approx((15 - 1.5 - 5) / 3)


def test_positional_and_timedelta() -> None:
    cfg = Config(timedelta(seconds=8), 4, timedelta(milliseconds=2500), margin=0.5)
    assert (cfg.term, cfg.renew, cfg.retry, cfg.margin) == (8.0, 4.0, 2.5, 0.5)


def test_two_renew_attempts_fit_before_the_deadline() -> None:
    for cfg in (Config(), Config(8, 4, 2), Config(1, 0.3, 0.1), Config(3600, 1200, 5)):
        assert cfg.renew + 2 * cfg.timeout <= cfg.term - cfg.margin
        assert cfg.timeout <= 10


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"retry": 0}, "0 < retry"),
        ({"retry": -1}, "0 < retry"),
        ({"renew": 0}, "0 < renew < term"),
        ({"term": 5, "renew": 5}, "0 < renew < term"),
        ({"margin": -0.1}, "0 <= margin < term"),
        ({"term": 2, "renew": 1, "margin": 2}, "0 <= margin < term"),
        ({"term": 10, "renew": 9, "margin": 1}, "renew + 2 * timeout <= term - margin"),
        ({"term": 10, "renew": 5, "margin": 1, "timeout": 2.5}, "renew + 2 * timeout"),
        ({"timeout": 0.01}, "timeout >= 0.05"),
    ],
)
def test_impossible_timings_name_the_rule(kwargs: dict[str, float], rule: str) -> None:
    with pytest.raises(ValueError, match=rule.replace("*", r"\*").replace("+", r"\+")):
        Config(**kwargs)


def test_broken_inequality_shows_the_numbers() -> None:
    with pytest.raises(ValueError) as err:
        Config(term=10, renew=5, margin=1, timeout=2.5)
    assert "5 + 2 * 2.5 = 10 > 10 - 1 = 9" in str(err.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "5", None, True])
def test_non_numbers_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="term"):
        Config(term=bad)  # type: ignore[arg-type]


def test_config_is_immutable() -> None:
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.term = 1.0  # type: ignore[misc]
