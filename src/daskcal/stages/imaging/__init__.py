"""The ``image`` stage and its relatives: CLEAN imaging, primary beams, facets, cubes, snapshots.

The major cycle (:func:`deconvolve`) is written around two callables, ``dirty(vis)`` and
``predict(model)``, provided by :class:`NumpyBackend` (in memory) or :class:`DaskBackend`
(lazy, over chunks). The stage computes once per major cycle (see :mod:`.stage`).

* :func:`image` - MFS image of one partition (weighting, gridding, CLEAN, restoring);
* :func:`primary_beam`, :func:`beam_image`, :func:`pbcor` - primary beams (Gaussian,
  Airy, analytic LOFAR HBA station) and primary-beam correction;
* :func:`facet_visibilities`, :func:`image_facets` - facets imaged about their own
  centres with their direction-dependent gains; :func:`mosaic` - the field mosaic;
* :func:`image_cube` - spectral cubes on a user-defined axis, with a continuum image;
* :func:`snapshot_images` - one image per time interval per subband, as one graph.

Public names load lazily: importing the package (or :mod:`.config`, whose settings classes
recipes validate) imports neither the gridders nor the deconvolvers.
"""

from __future__ import annotations

from daskcal._lazy import lazy_exports

# ``mosaic`` and ``primary_beam`` name both a submodule and its function: imported here
# (they are light), so that the package attribute is the function whoever imports the
# submodule first
from daskcal.stages.imaging.mosaic import mosaic as mosaic
from daskcal.stages.imaging.primary_beam import PrimaryBeamConfig as PrimaryBeamConfig
from daskcal.stages.imaging.primary_beam import beam_image as beam_image
from daskcal.stages.imaging.primary_beam import pbcor as pbcor
from daskcal.stages.imaging.primary_beam import primary_beam as primary_beam

_EXPORTS = {
    "DaskBackend": "backends", "lazy_imaging_weights": "backends",
    "CubeConfig": "config", "FacetImageConfig": "config", "ImageConfig": "config",
    "SnapshotConfig": "config",
    "image_cube": "cube",
    "facet_pixel_mask": "facet_image", "facet_visibilities": "facet_image",
    "image_facets": "facet_image",
    "DeconvolutionResult": "major", "NumpyBackend": "major", "deconvolve": "major",
    "region_mask": "masks", "robust_rms": "masks",
    "snapshot_images": "snapshots",
    "image": "stage", "select_product": "stage",
}

__getattr__, __dir__, _lazy_all = lazy_exports(__name__, _EXPORTS)
__all__ = sorted([*_lazy_all, "PrimaryBeamConfig", "beam_image", "mosaic", "pbcor",
                  "primary_beam"])
