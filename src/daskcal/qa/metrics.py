"""QA metrics and scores: every step reports metrics with a score in [0, 1] and a reason.

Scores follow the ALMA/VLA pipeline: 1 is good, 0 is bad, and a score is a piecewise
linear function of one measured value between a *good* and a *bad* threshold. All
thresholds live in one table, :data:`THRESHOLDS` (edit it, or pass another table to
:func:`score_value`):

==============================  =======  ======  ==========================================
metric                          good     bad     meaning
==============================  =======  ======  ==========================================
``new_flag_fraction``           0.10     0.50    fraction of samples newly flagged by a step
``antenna_new_flag_fraction``   0.20     0.80    worst antenna's newly flagged fraction
``total_flag_fraction``         0.30     0.90    fraction flagged after the step
``chi2_excess``                 2.0      10.0    median reduced chi-squared, ``max(c, 1/c)``
``flagged_solution_fraction``   0.05     0.30    gain solutions flagged
``unconverged_fraction``        0.05     0.50    solution cells that did not converge
``gain_amplitude_scatter``      0.20     1.00    std / mean of ``|G|`` over antennas
``averaging_shortfall``         0.05     0.50    ``1 - achieved / requested`` data reduction
``demix_residual_ratio``        0.10     0.50    A-team flux after / before demixing
``smooth_new_flag_fraction``    0.05     0.30    solutions flagged as outliers by smoothing
``image_rms_ratio``             1.5      5.0     image rms / theoretical noise (imaging hook)
``known_source_flux``           0.03     0.20    median ``|S / S_model - 1|`` of known sources
``astrometric_offset``          0.10     0.50    median offset of known sources, beams
``restoring_beam_mismatch``     0.20     0.60    ``|area_fit / area_PSF-curvature - 1|``
==============================  =======  ======  ==========================================

A step's score is the minimum of its metrics' scores (its reason: the worst metric's);
the run's score is the minimum over the steps (:func:`overall_score`, which also reports
the weighted mean). Informational metrics (data volume, sources below the horizon)
carry score 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Threshold:
    """Good and bad values of a metric (score 1 at or beyond ``good``, 0 beyond ``bad``).

    Parameters
    ----------
    good, bad : float
        The score falls linearly from 1 at ``good`` to 0 at ``bad``; ``good < bad``
        means lower values are better.
    description : str
        What the value measures (shown in the weblog).
    unit : str
        Unit of the value (``""``: dimensionless).
    """

    good: float
    bad: float
    description: str
    unit: str = ""


#: The scoring table (see the module notes).
THRESHOLDS: dict[str, Threshold] = {
    "new_flag_fraction": Threshold(0.10, 0.50, "fraction of samples newly flagged"),
    "antenna_new_flag_fraction": Threshold(0.20, 0.80, "worst antenna's newly flagged "
                                           "fraction"),
    "total_flag_fraction": Threshold(0.30, 0.90, "fraction of samples flagged after the "
                                     "step"),
    "chi2_excess": Threshold(2.0, 10.0, "median reduced chi-squared c of the solutions, "
                             "as max(c, 1/c)"),
    "flagged_solution_fraction": Threshold(0.05, 0.30, "fraction of gain solutions "
                                           "flagged"),
    "unconverged_fraction": Threshold(0.05, 0.50, "fraction of solution cells that did "
                                      "not converge"),
    "gain_amplitude_scatter": Threshold(0.20, 1.00, "std / mean of gain amplitudes over "
                                        "antennas, mean over cells"),
    "averaging_shortfall": Threshold(0.05, 0.50, "1 - achieved / requested data volume "
                                     "reduction"),
    "demix_residual_ratio": Threshold(0.10, 0.50, "apparent A-team flux after / before "
                                      "demixing"),
    "smooth_new_flag_fraction": Threshold(0.05, 0.30, "fraction of solutions flagged as "
                                          "outliers by smoothing"),
    "image_rms_ratio": Threshold(1.5, 5.0, "image rms / theoretical thermal noise"),
    "known_source_flux": Threshold(0.03, 0.20, "median |S / S_model - 1| of the known "
                                   "sources in an image"),
    "astrometric_offset": Threshold(0.10, 0.50, "median offset of the known sources from "
                                    "their catalogue positions", "beam"),
    "restoring_beam_mismatch": Threshold(0.20, 0.60, "|area of the fitted restoring beam / "
                                         "area of the PSF-curvature beam - 1|"),
}


def linear_score(value: float, good: float, bad: float) -> float:
    """Score in [0, 1]: 1 at or beyond ``good``, 0 at or beyond ``bad``, linear between.

    A non-finite ``value`` scores 0.
    """
    if value is None or not math.isfinite(value):
        return 0.0
    if good == bad:
        return 1.0 if value <= good else 0.0
    t = (value - good) / (bad - good)
    return float(min(1.0, max(0.0, 1.0 - t)))


@dataclass
class Metric:
    """One measured quantity of a step and its score.

    Attributes
    ----------
    name : str
        Key of :data:`THRESHOLDS` for scored metrics, any name for informational ones.
    value : float or None
        The measured value.
    score : float
        In [0, 1].
    reason : str
        One sentence: what was measured and why it scores so.
    partition : str
        Partition it was measured on (``""``: the whole step).
    unit : str
    """

    name: str
    value: float | None
    score: float
    reason: str
    partition: str = ""
    unit: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (non-finite values as None)."""
        out = asdict(self)
        v = out["value"]
        if isinstance(v, float) and not math.isfinite(v):
            out["value"] = None
        return out


def score_value(name: str, value: float, what: str, *, partition: str = "",
                table: Mapping[str, Threshold] | None = None, fmt: str = ".3g") -> Metric:
    """A scored metric: ``value`` against the thresholds of ``name``.

    Parameters
    ----------
    name : str
        Key of the table.
    value : float
    what : str
        Short text of the quantity for the reason (e.g. ``"12.0 % newly flagged"``).
    partition : str
    table : mapping, optional
        Thresholds (default :data:`THRESHOLDS`).
    fmt : str
        Format of the thresholds in the reason.
    """
    th = (table or THRESHOLDS)[name]
    score = linear_score(value, th.good, th.bad)
    if score >= 1.0:
        verdict = f"good (<= {th.good:{fmt}})" if th.good < th.bad else \
            f"good (>= {th.good:{fmt}})"
    elif score <= 0.0:
        verdict = f"bad (beyond {th.bad:{fmt}})"
    else:
        verdict = f"between good {th.good:{fmt}} and bad {th.bad:{fmt}}"
    return Metric(name, float(value) if value is not None else None, score,
                  f"{what}: {verdict}", partition, th.unit)


def info(name: str, value: float | None, reason: str, *, partition: str = "",
         unit: str = "") -> Metric:
    """An informational metric (score 1)."""
    return Metric(name, None if value is None else float(value), 1.0, reason, partition, unit)


@dataclass
class StepQA:
    """The QA of one step: its metrics, score and reason.

    Attributes
    ----------
    step, stage : str
    metrics : list of Metric
    fingerprint : str
        The step's fingerprint (a stale QA file is recomputed).
    """

    step: str
    stage: str
    metrics: list[Metric] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def score(self) -> float:
        """Minimum of the metrics' scores (1 without metrics)."""
        return min((m.score for m in self.metrics), default=1.0)

    @property
    def reason(self) -> str:
        """Reason of the worst metric."""
        worst = self.worst(1)
        return worst[0].reason if worst else "no metrics"

    def worst(self, n: int = 3) -> list[Metric]:
        """The ``n`` lowest-scoring metrics (scored below 1 first)."""
        return sorted(self.metrics, key=lambda m: m.score)[:n]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data of the QA file ``RUN_DIR/qa/NN-name.json``."""
        return {"step": self.step, "stage": self.stage, "fingerprint": self.fingerprint,
                "score": self.score, "reason": self.reason,
                "metrics": [m.to_json() for m in self.metrics]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepQA:
        """The inverse of :meth:`to_json`."""
        metrics = [Metric(**{k: m.get(k) for k in ("name", "value", "score", "reason",
                                                   "partition", "unit")})
                   for m in data.get("metrics", [])]
        return cls(data["step"], data.get("stage", ""), metrics, data.get("fingerprint", ""))


def overall_score(steps: Sequence[StepQA], weights: Mapping[str, float] | None = None,
                  n_reasons: int = 5) -> dict[str, Any]:
    """The run's score: minimum of the step scores, with the weighted mean and worst reasons.

    Parameters
    ----------
    steps : sequence of StepQA
    weights : mapping of str to float, optional
        Stage name -> weight of the mean (default 1).
    n_reasons : int
        How many of the worst metrics to list.

    Returns
    -------
    dict
        ``score`` (min), ``mean`` (weighted mean), ``reasons`` (list of
        ``{"step", "name", "score", "reason"}``, worst first).
    """
    if not steps:
        return {"score": 1.0, "mean": 1.0, "reasons": []}
    w = [float((weights or {}).get(s.stage, 1.0)) for s in steps]
    mean = sum(wi * s.score for wi, s in zip(w, steps, strict=True)) / max(sum(w), 1e-12)
    flat = [(s.step, m) for s in steps for m in s.metrics]
    flat.sort(key=lambda x: x[1].score)
    reasons = [{"step": step, "name": m.name, "score": m.score, "reason": m.reason,
                "partition": m.partition} for step, m in flat[:n_reasons] if m.score < 1.0]
    return {"score": min(s.score for s in steps), "mean": mean, "reasons": reasons}


def threshold_rows(table: Mapping[str, Threshold] | None = None) -> Iterable[dict[str, Any]]:
    """The scoring table as rows (for the weblog)."""
    for name, th in (table or THRESHOLDS).items():
        yield {"name": name, "good": th.good, "bad": th.bad, "description": th.description}


__all__ = ["THRESHOLDS", "Metric", "StepQA", "Threshold", "info", "linear_score",
           "overall_score", "score_value", "threshold_rows"]
