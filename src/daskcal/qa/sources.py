"""Image QA against known sources and against the PSF: fluxes, astrometry, restoring beam.

Known sources (:func:`measure_sources`, :func:`source_metrics`). Given a reference sky
model (a catalogue, the calibrator's model, a simulation's truth), the brightest point
components inside an image are measured by a least-squares fit of the restoring beam
(its shape fixed; amplitude, position and a constant background free) to the pixels
within ``1.5 x BMAJ`` of the catalogue position, on the primary-beam-corrected image when
there is one (``RESTORED_PBCOR``, else ``RESTORED``). A point source's fitted amplitude
in Jy/beam is its flux density; the model's is its Stokes I at the image's reference
frequency. Sources fitted at a signal-to-noise ratio below ``min_snr`` (against the
residual's robust rms) are reported but not scored. Scores (:data:`THRESHOLDS`):

* ``known_source_flux``: the median of ``|S_image / S_model - 1|``;
* ``astrometric_offset``: the median offset from the catalogue position, in units of the
  restoring beam's major axis (FWHM).

Restoring beam (:func:`curvature_beam`, :func:`beam_metric`). The expected beam is the
Gaussian with the PSF's curvature at its peak: ``ln PSF`` is quadratic near the peak
with Hessian ``-C^-1`` (``C`` the Gaussian's covariance), so the second differences of
``ln PSF`` over the 3 x 3 pixels about the peak give the beam that the uv coverage and
weights imply (exact for a Gaussian PSF, independent of the fitted main lobe). The
score ``restoring_beam_mismatch`` is ``|area_fit / area_expected - 1|``: a fitted beam far
from it means the fit followed sidelobes or a shoulder (a PSF with little central
curvature, e.g. a core-heavy array with natural weights, is flagged the same way: the
restored image then has a beam that does not describe the PSF's core).

Image layout: :mod:`daskcal.stages.imaging` (axis 0 ``l``, axis 1 ``m``, pixel
``npix // 2`` at the phase centre).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from scipy import optimize

from daskcal.data.geometry import lmn_of
from daskcal.kernels.deconvolution import Beam, gaussian_image
from daskcal.qa.metrics import Metric, info, score_value
from daskcal.sky.model import SkyModel


def measure_sources(img: np.ndarray, cell_rad: float, phase_centre_rad, beam: Beam,
                    sky: SkyModel, freq_hz: float, *, n: int = 10,
                    rms: float | None = None) -> list[dict]:
    """Fit the ``n`` brightest point components of ``sky`` that lie inside ``img``.

    Parameters
    ----------
    img : ndarray, shape (npix_l, npix_m)
        Restored image, Jy/beam (primary-beam corrected for intrinsic fluxes).
    cell_rad : float
        Pixel size, radians.
    phase_centre_rad : (float, float)
        Image centre (RA, Dec), radians.
    beam : Beam
        Restoring beam.
    sky : SkyModel
        Reference components (Gaussians are skipped).
    freq_hz : float
        Frequency of the image, Hz.
    n : int
        Most sources measured.
    rms : float, optional
        Image noise, Jy/beam, for the signal-to-noise ratios (default: robust rms of
        ``img``).

    Returns
    -------
    list of dict
        Per source: ``name``, ``model_jy``, ``measured_jy``, ``ratio``, ``offset_arcsec``,
        ``offset_beam`` (in units of BMAJ), ``snr``, ``pixel`` (fitted ``(i, j)``).
    """
    img = np.asarray(img, dtype=np.float64)
    nl, nm = img.shape
    if rms is None:
        from daskcal.stages.imaging.masks import robust_rms

        rms = robust_rms(img[np.isfinite(img)])
    lmn = lmn_of(sky.ra, sky.dec, float(phase_centre_rad[0]), float(phase_centre_rad[1]))
    ii = lmn[:, 0] / cell_rad + nl // 2
    jj = lmn[:, 1] / cell_rad + nm // 2
    half = max(3, int(math.ceil(1.5 * beam.bmaj_rad / cell_rad)))
    inside = ((lmn[:, 2] > 0) & ~sky.is_gaussian & (ii >= half) & (ii < nl - half)
              & (jj >= half) & (jj < nm - half))
    flux = sky.flux(np.array([freq_hz]))[:, 0, 0]
    order = np.flatnonzero(inside)[np.argsort(-flux[inside], kind="stable")][:n]
    out = []
    for k in order:
        i0, j0 = int(round(ii[k])), int(round(jj[k]))
        win = img[i0 - half:i0 + half + 1, j0 - half:j0 + half + 1]
        if not np.all(np.isfinite(win)):
            continue

        def resid(q, win=win):
            amp, x0, y0, bg = q
            return (amp * gaussian_image(beam, win.shape, cell_rad, cell_rad,
                                         centre=(half + x0, half + y0)) + bg - win).ravel()

        start = (float(win[half, half]), ii[k] - i0, jj[k] - j0, 0.0)
        fit = optimize.least_squares(resid, start,
                                     x_scale=(max(abs(start[0]), 1e-12), 1.0, 1.0,
                                              max(rms, 1e-12)))
        amp, x0, y0, _ = fit.x
        off_rad = math.hypot(i0 + x0 - ii[k], j0 + y0 - jj[k]) * cell_rad
        out.append({"name": str(sky.name[k]), "model_jy": float(flux[k]),
                    "measured_jy": float(amp), "ratio": float(amp / flux[k]),
                    "offset_arcsec": math.degrees(off_rad) * 3600.0,
                    "offset_beam": off_rad / beam.bmaj_rad,
                    "snr": float(amp / rms) if rms > 0 else math.inf,
                    "pixel": (float(i0 + x0), float(j0 + y0))})
    return out


def source_metrics(part: str, xds: xr.Dataset, sky: SkyModel, *, n: int = 10,
                   min_snr: float = 20.0) -> list[Metric]:
    """Scored flux and astrometry metrics of an image against a reference sky model.

    Parameters
    ----------
    part : str
        Partition name (for the metrics).
    xds : xarray.Dataset
        An image of :func:`daskcal.stages.imaging.image` (``RESTORED[_PBCOR]``, attrs
        ``cell_rad``, ``phase_centre_rad``, ``bmaj_rad``, ``bmin_rad``, ``bpa_rad``,
        ``ref_freq_hz``).
    sky : SkyModel
    n, min_snr
        As :func:`measure_sources`; sources below ``min_snr`` are not scored.

    Returns
    -------
    list of Metric
    """
    var = "RESTORED_PBCOR" if "RESTORED_PBCOR" in xds else "RESTORED"
    img = np.asarray(xds[var].values, dtype=np.float64)
    if img.ndim != 2:
        img = img.reshape((-1,) + img.shape[-2:])[0]
    a = xds.attrs
    beam = Beam(float(a["bmaj_rad"]), float(a["bmin_rad"]), float(a["bpa_rad"]))
    rms = None
    if "RESIDUAL" in xds and var == "RESTORED":
        from daskcal.stages.imaging.masks import robust_rms

        res = np.asarray(xds["RESIDUAL"].values, dtype=np.float64)
        rms = robust_rms(res[np.isfinite(res)])
    rows = measure_sources(img, float(a["cell_rad"]), a["phase_centre_rad"], beam, sky,
                           float(a["ref_freq_hz"]), n=n, rms=rms)
    used = [r for r in rows if r["snr"] >= min_snr]
    if not used:
        return [info("known_sources", len(rows), f"{len(rows)} reference sources in the "
                     f"image, none at S/N >= {min_snr:g}: fluxes and positions not scored",
                     partition=part)]
    dev = np.array([abs(r["ratio"] - 1.0) for r in used])
    offs = np.array([r["offset_beam"] for r in used])
    worst_f = used[int(np.argmax(dev))]
    worst_p = used[int(np.argmax(offs))]
    return [
        score_value("known_source_flux", float(np.median(dev)),
                    f"{len(used)} known sources on {var}: median |S/S_model - 1| = "
                    f"{np.median(dev):.3f} (worst {worst_f['name']}: {worst_f['ratio']:.3f} "
                    f"of {worst_f['model_jy']:.3g} Jy)", partition=part),
        score_value("astrometric_offset", float(np.median(offs)),
                    f"median offset {np.median(offs):.3f} beam (worst {worst_p['name']}: "
                    f"{worst_p['offset_arcsec']:.2f}\")", partition=part),
    ]


def curvature_beam(psf: np.ndarray, cell_rad: float) -> Beam:
    """The Gaussian beam with the PSF's curvature at its peak (see the module notes).

    Parameters
    ----------
    psf : ndarray, shape (nx, ny)
        PSF with its peak at ``(nx // 2, ny // 2)`` (or anywhere: the maximum is used).
    cell_rad : float
        Pixel size (both axes), radians.

    Returns
    -------
    Beam
        FWHMs and position angle (north through east), radians.
    """
    p = np.asarray(psf, dtype=np.float64)
    i, j = np.unravel_index(int(np.nanargmax(p)), p.shape)
    w = p[i - 1:i + 2, j - 1:j + 2] / p[i, j]
    if w.shape != (3, 3) or np.any(w <= 0):
        raise ValueError("the PSF's 3 x 3 pixels about the peak must be positive")
    g = np.log(w)
    hll = (g[2, 1] - 2 * g[1, 1] + g[0, 1]) / cell_rad**2
    hmm = (g[1, 2] - 2 * g[1, 1] + g[1, 0]) / cell_rad**2
    hlm = (g[2, 2] - g[2, 0] - g[0, 2] + g[0, 0]) / (4 * cell_rad**2)
    cov = np.linalg.inv(-np.array([[hll, hlm], [hlm, hmm]]))  # (l, m) covariance
    evals, evecs = np.linalg.eigh(cov)
    if np.any(evals <= 0):
        raise ValueError("the PSF is not peaked (no positive curvature at its maximum)")
    f = math.sqrt(8.0 * math.log(2.0))
    major = evecs[:, 1]  # (l, m) of the major axis
    pa = math.atan2(major[0], major[1])  # north (m) through east (l)
    pa = (pa + math.pi / 2) % math.pi - math.pi / 2  # in [-pi/2, pi/2), as fit_beam's
    return Beam(f * math.sqrt(evals[1]), f * math.sqrt(evals[0]), pa)


def beam_metric(part: str, xds: xr.Dataset) -> Metric | None:
    """``restoring_beam_mismatch`` of an image with a ``PSF`` (None without one)."""
    if "PSF" not in xds or not xds.attrs.get("bmaj_rad"):
        return None
    psf = np.asarray(xds["PSF"].values, dtype=np.float64)
    if psf.ndim != 2:
        psf = psf.reshape((-1,) + psf.shape[-2:])[0]
    try:
        exp = curvature_beam(psf, float(xds.attrs["cell_rad"]))
    except ValueError as exc:
        return info("restoring_beam_mismatch", None, f"no expected beam: {exc}",
                    partition=part)
    fit = (float(xds.attrs["bmaj_rad"]), float(xds.attrs["bmin_rad"]))
    ratio = fit[0] * fit[1] / (exp.bmaj_rad * exp.bmin_rad)
    arc = 180 / math.pi * 3600
    return score_value("restoring_beam_mismatch", abs(ratio - 1.0),
                       f"fitted beam {fit[0] * arc:.3g}\" x {fit[1] * arc:.3g}\" vs the PSF's "
                       f"curvature {exp.bmaj_rad * arc:.3g}\" x {exp.bmin_rad * arc:.3g}\" "
                       f"(area ratio {ratio:.3f})", partition=part)


__all__ = ["beam_metric", "curvature_beam", "measure_sources", "source_metrics"]
