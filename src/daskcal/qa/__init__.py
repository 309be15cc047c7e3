"""daskcal.qa: QA metrics and scores of pipeline steps, their plots, and the HTML weblog.

- :mod:`daskcal.qa.metrics`: the scoring table (:data:`THRESHOLDS`), metrics, step scores
- :mod:`daskcal.qa.summary`: lazy summaries computed with a step's graph
- :mod:`daskcal.qa.collect`: per-stage summaries and scorers, QA files of a run
- :mod:`daskcal.qa.plots`, :mod:`daskcal.qa.weblog`: PNG plots and static HTML pages

Names load lazily; importing this package imports neither matplotlib nor dask.
"""

from __future__ import annotations

from daskcal._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "THRESHOLDS": "metrics", "Metric": "metrics", "StepQA": "metrics",
    "Threshold": "metrics", "linear_score": "metrics", "overall_score": "metrics",
    "score_step": "collect", "step_summaries": "collect", "register_scorer": "collect",
    "build_weblog": "weblog",
})
