"""daskcal.survey: one recipe over many observations, on several sites (Dask clusters).

A survey file (:mod:`daskcal.survey.config`) names the recipe, the sites and the
observations; the driver (:mod:`daskcal.survey.driver`) places each observation on a
site (:mod:`daskcal.survey.placement`), stages its data there with checksums
(:mod:`daskcal.survey.staging`), runs the recipe, and brings the products back; its
state lives in a database (:mod:`daskcal.survey.db`, sqlite or PostgreSQL), so that a
killed driver's successor resumes without losing or repeating work.

>>> from daskcal.survey import load_survey, run_survey
>>> rows = run_survey(load_survey("configs/surveys/example.yaml"))  # doctest: +SKIP
"""

from daskcal._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "SurveyConfig": "config",
    "Survey": "config",
    "SurveyError": "config",
    "load_survey": "config",
    "survey_from_dict": "config",
    "survey_schema": "config",
    "Database": "db",
    "DatabaseError": "db",
    "SiteLoad": "placement",
    "Waiting": "placement",
    "place": "placement",
    "staging_seconds": "placement",
    "copy_verified": "staging",
    "verify_tree": "staging",
    "StagingError": "staging",
    "SurveyDriver": "driver",
    "run_survey": "driver",
    "retry_failed": "driver",
    "summary_table": "driver",
})
