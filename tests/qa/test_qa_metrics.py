"""Scores, the thresholds table and the run's overall score."""

from __future__ import annotations

import math

import pytest

from daskcal.qa.metrics import (
    THRESHOLDS,
    Metric,
    StepQA,
    info,
    linear_score,
    overall_score,
    score_value,
)


@pytest.mark.parametrize(("value", "expected"), [(0.0, 1.0), (0.1, 1.0), (0.3, 0.5),
                                                 (0.5, 0.0), (0.9, 0.0), (math.nan, 0.0)])
def test_linear_score_of_new_flags(value, expected):
    th = THRESHOLDS["new_flag_fraction"]
    assert linear_score(value, th.good, th.bad) == pytest.approx(expected)


def test_every_threshold_is_documented_and_scores_are_bounded():
    for name, th in THRESHOLDS.items():
        assert th.description and th.good != th.bad, name
        for v in (th.good, th.bad, (th.good + th.bad) / 2, -1e9, 1e9):
            m = score_value(name, v, "x")
            assert 0.0 <= m.score <= 1.0 and m.reason.startswith("x: ")


def test_step_and_overall_scores_are_minima_with_reasons():
    a = StepQA("flag", "flag", [score_value("new_flag_fraction", 0.3, "30 % new"),
                                info("data_volume_bytes", 10, "10 B")])
    b = StepQA("solve", "solve", [score_value("chi2_excess", 1.1, "chi2 1.1")])
    assert a.score == pytest.approx(0.5) and a.reason.startswith("30 % new")
    over = overall_score([a, b])
    assert over["score"] == pytest.approx(0.5)
    assert over["mean"] == pytest.approx(0.75)
    assert [r["step"] for r in over["reasons"]] == ["flag"]
    again = StepQA.from_json(a.to_json())
    assert again.score == a.score and isinstance(again.metrics[0], Metric)
