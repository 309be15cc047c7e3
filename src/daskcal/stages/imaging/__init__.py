"""The ``image`` stage: weighting, PSF, restoring beam, CLEAN, restored products (MFS).

The major cycle (:func:`deconvolve`) is written around two callables, ``dirty(vis)`` and
``predict(model)``, provided by :class:`NumpyBackend` (in memory) or :class:`DaskBackend`
(lazy, over chunks). The stage computes once per major cycle (see :mod:`.stage`).
"""

from daskcal.stages.imaging.backends import DaskBackend, lazy_imaging_weights
from daskcal.stages.imaging.config import ImageConfig
from daskcal.stages.imaging.major import DeconvolutionResult, NumpyBackend, deconvolve
from daskcal.stages.imaging.masks import region_mask, robust_rms
from daskcal.stages.imaging.stage import image, select_product

__all__ = ["DaskBackend", "DeconvolutionResult", "ImageConfig", "NumpyBackend", "deconvolve",
           "image", "lazy_imaging_weights", "region_mask", "robust_rms", "select_product"]
