"""Deconvolution kernels: CLEAN minor cycles (Hogbom, Clark, multiscale) and beams.

Arrays in, arrays out (numba/numpy/scipy); the major cycle lives in
:mod:`daskcal.stages.imaging`. Image layout: ``image[i, j]``, axis 0 ``l`` (east), axis 1
``m`` (north), as the gridder's; PSFs are twice the image size (see :mod:`._common`).
"""

from daskcal.kernels.deconvolution._common import PsfConvolver, abs_peak, max_sidelobe
from daskcal.kernels.deconvolution.beamfit import (
    Beam,
    beam_from_moments,
    fit_beam,
    gaussian_image,
    restore,
)
from daskcal.kernels.deconvolution.clark import clark_clean
from daskcal.kernels.deconvolution.hogbom import hogbom_clean
from daskcal.kernels.deconvolution.multiscale import (
    MultiscaleCleaner,
    multiscale_clean,
    scale_function,
)

__all__ = ["Beam", "MultiscaleCleaner", "PsfConvolver", "abs_peak", "beam_from_moments",
           "clark_clean", "fit_beam", "gaussian_image", "hogbom_clean", "max_sidelobe",
           "multiscale_clean", "restore", "scale_function"]
