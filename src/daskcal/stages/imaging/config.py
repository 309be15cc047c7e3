"""The typed configuration of the ``image`` stage (deconvolution and products, MFS)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ImageGrid(BaseModel):
    """A square image grid: ``npix`` and exactly one of ``cell_arcsec`` and ``fov_deg``.

    Subclasses declare the three fields (with their own defaults and descriptions); this
    base checks them (a subclass may override ``_cell``) and derives the pixel size.
    """

    @model_validator(mode="after")
    def _cell(self):
        if self.npix % 2:
            raise ValueError("npix must be even")
        if (self.cell_arcsec is None) == (self.fov_deg is None):
            raise ValueError("give exactly one of cell_arcsec and fov_deg")
        return self

    @property
    def cell_rad(self) -> float:
        """Pixel size, radians."""
        if self.cell_arcsec is not None:
            return math.radians(self.cell_arcsec / 3600.0)
        return math.radians(self.fov_deg) / self.npix


class ImageConfig(ImageGrid):
    """Imaging, weighting, CLEAN and product settings of the ``image`` stage."""

    model_config = ConfigDict(extra="forbid")

    npix: int = Field(512, ge=16, description="Image size, pixels (square, even).")
    cell_arcsec: float | None = Field(None, gt=0, description="Pixel size, arcsec (give "
                                      "this or fov_deg).")
    fov_deg: float | None = Field(None, gt=0, description="Field of view, degrees (the cell "
                                  "is fov / npix).")
    data_group: str = Field("base", description="Data group whose visibilities are imaged "
                            "(e.g. base, corrected).")
    correlation: str = Field("I", description="'I' (mean of the parallel hands) or one "
                             "correlation name.")
    channels: Literal["mfs"] = Field("mfs", description="Channel handling: mfs (all channels "
                                     "into one image; cubes are a later option).")
    weighting: Literal["natural", "uniform", "briggs"] = Field("briggs", description="Visibility "
                                                               "weighting.")
    robust: float = Field(0.0, ge=-2, le=2, description="Briggs robustness (-2 uniform .. 2 "
                          "natural).")
    taper_arcsec: float | None = Field(None, gt=0, description="Gaussian uv taper given as the "
                                       "image-plane FWHM, arcsec.")
    taper_lambda: float | None = Field(None, gt=0, description="Gaussian uv taper given as its "
                                       "uv-plane FWHM, wavelengths.")
    epsilon: float = Field(1e-5, ge=1e-12, lt=0.1, description="Gridding accuracy.")
    method: Literal["wstack", "wproject"] = Field("wstack", description="w-term handling.")
    deconvolver: Literal["hogbom", "clark", "multiscale"] = Field("hogbom", description="Minor "
                                                                  "cycle algorithm.")
    niter: int = Field(1000, ge=0, description="Largest total number of clean components.")
    gain: float = Field(0.1, gt=0, le=1, description="Loop gain of the minor cycle.")
    threshold_jy: float = Field(0.0, ge=0, description="Absolute stopping threshold, Jy/beam.")
    auto_threshold: float | None = Field(3.0, gt=0, description="Stop at this many times the "
                                         "residual rms (robust, MAD-based); none to disable.")
    auto_threshold_noise: Literal["residual", "theoretical"] = Field(
        "residual", description="Noise that auto_threshold multiplies: 'residual' (robust rms "
        "of the residual image, each major cycle) or 'theoretical' (from the weights, "
        "sqrt(sum w_img^2 / w) / sum w_img; needs WEIGHT = 1 / sigma^2 in Jy^-2). The residual "
        "rms includes unsubtracted source structure (e.g. pixelisation errors of off-grid "
        "sources), so it can stop CLEAN early at an inflated noise.")
    auto_mask: float | None = Field(None, gt=0, description="Automatic mask: clean only pixels "
                                    "that once exceeded this many residual rms (grows per major "
                                    "cycle); none to disable.")
    mgain: float = Field(0.8, gt=0, le=1, description="Major-cycle gain: a minor cycle stops "
                         "once the peak residual fell to (1 - mgain) of its starting value.")
    cycle_factor: float = Field(0.0, ge=0, description="Minor cycles also stop at cycle_factor x "
                                "the PSF's largest sidelobe x the peak (CASA's cyclefactor; 0, the default, "
                                "disables it: with high-sidelobe PSFs it makes minor cycles tiny).")
    max_major: int = Field(20, ge=1, description="Largest number of major cycles.")
    scales_px: list[float] = Field(default_factory=lambda: [0.0, 4.0, 8.0, 16.0],
                                   description="Multiscale scale sizes, pixels.")
    scale_bias: float = Field(0.6, ge=0, lt=1, description="Multiscale small-scale bias.")
    persist_mb: float = Field(2000.0, ge=0, description="Dask backend: keep the selected "
                              "visibilities, imaging weights and uvw in memory across major "
                              "cycles when they take less than this (MB); larger data are "
                              "read and weighted again in every major cycle.")
    mask: list[str] | None = Field(None, description="User mask regions (world coordinates), "
                                   "e.g. 'circle(150.1, 40.05, 30\")' or 'box(150, 40, 60\", "
                                   "60\")' (ds9-like; degrees, sizes with \", ' or d).")

    @model_validator(mode="after")
    def _taper(self):
        if self.taper_arcsec is not None and self.taper_lambda is not None:
            raise ValueError("give at most one of taper_arcsec and taper_lambda")
        return self


__all__ = ["ImageConfig", "ImageGrid"]
