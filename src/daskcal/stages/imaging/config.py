"""The typed configuration of the imaging stages: ``image`` (deconvolution and products,
MFS), cubes, facet images and snapshots.

Only pydantic: recipes validate these settings without importing the stages (gridders,
deconvolvers, numba); each stage module re-exports its own class.
"""

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


class CubeConfig(ImageConfig):
    """Settings of :func:`~daskcal.stages.imaging.cube.image_cube`: the imaging settings of
    ``image`` plus a spectral axis.

    All :class:`~daskcal.stages.imaging.ImageConfig` fields apply to every channel (and to
    the continuum image).
    """

    nchan: int | None = Field(None, ge=1, description="Number of output channels (default: "
                              "enough to cover the input band, frequency axis only).")
    spectral_axis: Literal["frequency", "velocity"] = Field(
        "frequency", description="Unit of start and width: frequency (Hz) or velocity (km/s).")
    start: float | None = Field(None, description="Centre of the first output channel, Hz or "
                                "km/s in the output frame (default: the first input channel "
                                "converted at mid-time; frequency axis only).")
    width: float | None = Field(None, description="Output channel width and spacing, Hz or "
                                "km/s, non-zero, may be negative (default: the input channel "
                                "width; frequency axis only).")
    velocity_convention: Literal["radio", "optical"] = Field(
        "radio", description="Velocity definition: radio c (f0 - f) / f0 or optical "
        "c (f0 - f) / f.")
    rest_freq_hz: float | None = Field(None, gt=0, description="Rest frequency f0, Hz "
                                       "(needed for a velocity axis; recorded in products).")
    frame: Literal["TOPO", "LSRK", "BARY"] = Field(
        "LSRK", description="Frame of the output spectral axis (CASA's default is LSRK).")
    conversion: Literal["per_time", "mid_time"] = Field(
        "per_time", description="Assign input channels to output channels with the frame "
        "conversion of each integration (per_time) or of the middle of the observation.")
    continuum: bool = Field(True, description="Also make the continuum (MFS) image of all "
                            "the data.")
    node_spacing_s: float = Field(600.0, gt=0, description="Largest spacing of the times at "
                                  "which the Doppler factor is computed with astropy, s.")

    @model_validator(mode="after")
    def _axis(self):
        if self.width is not None and self.width == 0:
            raise ValueError("width must be non-zero")
        if self.spectral_axis == "velocity":
            missing = [k for k in ("start", "width", "nchan", "rest_freq_hz")
                       if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a velocity axis needs {', '.join(missing)}")
        return self

    def image_config(self) -> ImageConfig:
        """The :class:`ImageConfig` part (what each channel image is made with)."""
        keys = ImageConfig.model_fields.keys()
        return ImageConfig.model_validate({k: getattr(self, k) for k in keys})


class FacetImageConfig(ImageConfig):
    """Settings of facet imaging: the ``image`` stage's, per facet, plus the facet layout.

    ``npix`` is the size of every facet image (default: each facet's own, from its
    polygon, ``padding`` and the cell); the cell is ``cell_arcsec`` (``fov_deg`` is not
    used: a facet's field is its polygon).
    """

    model_config = ConfigDict(extra="forbid")

    npix: int | None = Field(None, ge=16, description="Size of every facet image, pixels "
                             "(even; none: per facet, the smallest even size covering the "
                             "facet polygon times padding).")
    padding: float = Field(1.2, ge=1.0, description="Factor on the facet's half-extent about "
                           "its centre when sizing its image.")
    centre: Literal["direction", "polygon"] = Field("direction", description="Facet image "
                                                    "centre: the calibrator direction or the "
                                                    "centre of the polygon's bounding box.")
    update_weights: bool = Field(True, description="Scale the weights by |g_p|^2 |g_q|^2 when "
                                 "correcting (the noise of the corrected data).")
    subtract_others: bool = Field(True, description="When a sky model is given, subtract the "
                                  "other directions (with their DD gains) before imaging a "
                                  "facet.")
    mask_to_facet: bool = Field(False, description="Clean only inside the facet polygon "
                                "(combined with mask regions).")

    @model_validator(mode="after")
    def _cell(self):
        if self.npix is not None and self.npix % 2:
            raise ValueError("npix must be even")
        if self.cell_arcsec is None or self.fov_deg is not None:
            raise ValueError("give cell_arcsec (not fov_deg): a facet's field is its polygon")
        return self

    def image_config(self, npix: int) -> ImageConfig:
        """The :class:`ImageConfig` of one facet image of ``npix`` pixels (``base`` group)."""
        fields = self.model_dump(include=set(ImageConfig.model_fields))
        return ImageConfig.model_validate({**fields, "npix": int(npix), "fov_deg": None,
                                           "data_group": "base"})


class SnapshotConfig(ImageGrid):
    """Settings of :func:`~daskcal.stages.imaging.snapshots.snapshot_images`."""

    model_config = ConfigDict(extra="forbid")

    npix: int = Field(256, ge=16, description="Image size, pixels (square, even).")
    cell_arcsec: float | None = Field(None, gt=0, description="Pixel size, arcsec (give "
                                      "this or fov_deg).")
    fov_deg: float | None = Field(None, gt=0, description="Field of view, degrees.")
    interval_s: float = Field(1.0, gt=0, description="Length of a snapshot, s (rounded to a "
                              "whole number of integrations, at least one).")
    chan_per_subband: int | None = Field(None, ge=1, description="Channels per subband "
                                         "(default: all channels in one subband).")
    data_group: str = Field("base", description="Data group to image.")
    correlation: str = Field("I", description="'I' (mean of the parallel hands) or one "
                             "correlation name.")
    weighting: Literal["natural", "uniform", "briggs"] = Field(
        "briggs", description="Visibility weighting (densities per snapshot).")
    robust: float = Field(0.0, ge=-2, le=2, description="Briggs robustness.")
    taper_arcsec: float | None = Field(None, gt=0, description="Gaussian uv taper as an "
                                       "image-plane FWHM, arcsec.")
    epsilon: float = Field(1e-5, ge=1e-12, lt=0.1, description="Gridding accuracy.")
    method: Literal["wstack", "wproject"] = Field("wstack", description="w-term handling.")
    niter: int = Field(0, ge=0, description="Hogbom components per snapshot (0: dirty "
                       "images only).")
    gain: float = Field(0.1, gt=0, le=1, description="Loop gain of the minor cycle.")
    threshold_jy: float = Field(0.0, ge=0, description="Absolute CLEAN threshold, Jy/beam.")
    auto_threshold: float | None = Field(3.0, gt=0, description="Also stop at this many "
                                         "times the snapshot's robust rms; none to disable.")
    dtype: Literal["float32", "float64"] = Field("float32", description="Image data type.")

    @property
    def products(self) -> tuple[str, ...]:
        """The image variables made."""
        return ("DIRTY",) if self.niter == 0 else ("DIRTY", "MODEL", "RESIDUAL", "RESTORED")


__all__ = ["CubeConfig", "FacetImageConfig", "ImageConfig", "ImageGrid", "SnapshotConfig"]
