"""The ``facets`` stage: calibrator selection, Voronoi facets and direction-dependent solves.

FACTOR/Rapthor's facet calibration as Dask graphs:

* :func:`plan_facets` picks calibrator directions (patches above an apparent flux) and
  tiles the image field with their Voronoi facets (:mod:`daskcal.sky.facets`);
* :func:`solve_facets` solves per-direction gains jointly (a fast scalar-phase solve,
  then a slow diagonal solve on the model corrupted by the fast phases), lazily;
* :func:`write_dd_gains` / :func:`write_dd_h5parm` persist them;
  :func:`daskcal.stages.subtract.subtract` removes directions with their gains.
"""

from __future__ import annotations

from daskcal.stages.facets.config import (
    DDSolveStep,
    FacetConfig,
    FacetError,
    FacetPlan,
    gaussian_beam,
    plan_facets,
    solint_factors,
)
from daskcal.stages.facets.export import read_dd_gains, write_dd_gains, write_dd_h5parm
from daskcal.stages.facets.solve import cell_axis, solve_facets

__all__ = ["DDSolveStep", "FacetConfig", "FacetError", "FacetPlan", "cell_axis",
           "gaussian_beam", "plan_facets", "read_dd_gains", "solint_factors", "solve_facets",
           "write_dd_gains", "write_dd_h5parm"]
