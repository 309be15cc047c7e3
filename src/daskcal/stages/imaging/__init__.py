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
"""

from daskcal.stages.imaging.backends import DaskBackend, lazy_imaging_weights
from daskcal.stages.imaging.config import ImageConfig
from daskcal.stages.imaging.cube import CubeConfig, image_cube
from daskcal.stages.imaging.facet_image import (
    FacetImageConfig,
    facet_pixel_mask,
    facet_visibilities,
    image_facets,
)
from daskcal.stages.imaging.major import DeconvolutionResult, NumpyBackend, deconvolve
from daskcal.stages.imaging.masks import region_mask, robust_rms
from daskcal.stages.imaging.mosaic import mosaic
from daskcal.stages.imaging.primary_beam import PrimaryBeamConfig, beam_image, pbcor, primary_beam
from daskcal.stages.imaging.snapshots import SnapshotConfig, snapshot_images
from daskcal.stages.imaging.stage import image, select_product

__all__ = ["CubeConfig", "DaskBackend", "DeconvolutionResult", "FacetImageConfig", "ImageConfig",
           "NumpyBackend", "PrimaryBeamConfig", "SnapshotConfig", "beam_image", "deconvolve",
           "facet_pixel_mask", "facet_visibilities", "image", "image_cube", "image_facets",
           "lazy_imaging_weights", "mosaic", "pbcor", "primary_beam", "region_mask",
           "robust_rms", "select_product", "snapshot_images"]
