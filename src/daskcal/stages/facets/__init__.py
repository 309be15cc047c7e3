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

from daskcal._lazy import lazy_exports

# loaded on first use: ``solve`` imports the DD solvers (numba), which the settings
# (``FacetConfig``, imported by recipes) do not need
_EXPORTS = {
    "DDSolveStep": "config", "FacetConfig": "config", "FacetError": "config",
    "FacetPlan": "config", "gaussian_beam": "config", "plan_facets": "config",
    "solint_factors": "config",
    "read_dd_gains": "export", "write_dd_gains": "export", "write_dd_h5parm": "export",
    "cell_axis": "solve", "solve_facets": "solve",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
