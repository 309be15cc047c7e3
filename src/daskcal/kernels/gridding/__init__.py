"""Gridding and degridding for imaging: w-stacking and w-projection with ES kernels.

Public API (arrays in, arrays out; see :mod:`.imaging` for conventions):

- :func:`dirty_image` -- visibilities -> dirty image;
- :func:`predict_vis` -- model image -> visibilities (the exact adjoint);
- :func:`grid_partial` / :func:`finish_dirty` -- the same split at the uv grid, so that
  partial grids of chunks can be summed before the FFT;
- :func:`make_plan` / :class:`GriddingPlan` -- kernel, grid and w sampling chosen from an
  accuracy, with the accuracy estimate;
- :func:`w_range` -- the w range a plan must cover.
"""

from daskcal.kernels.gridding.imaging import (
    dirty_image,
    finish_dirty,
    grid_partial,
    predict_vis,
    w_range,
)
from daskcal.kernels.gridding.plan import METHODS, GriddingPlan, make_plan

__all__ = ["METHODS", "GriddingPlan", "dirty_image", "finish_dirty", "grid_partial",
           "make_plan", "predict_vis", "w_range"]
