"""The smooth stage: noise reduction by the expected factor, flags, outliers, laziness."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import xarray as xr
from pydantic import ValidationError

from daskcal.stages.smooth import SmoothConfig, SmoothError, smooth, unwrap_valid

N_TIME, N_FREQ, N_ANT = 3, 96, 8
SIGMA = 0.01  # complex noise per real component on |g| ~ 1


def _raise_on_compute(*args, **kwargs):
    raise AssertionError("the graph was computed while it was being built")


def truth_gains(seed=0, flat=False):
    """Smooth gains (n_time, n_freq, n_ant, 2): amplitude ripple, phase offset and delay.

    ``flat``: no delay and a ten times slower ripple (what a median filter is made for).
    """
    rng = np.random.default_rng(seed)
    k = np.arange(N_FREQ)[None, :, None, None] / (10.0 if flat else 1.0)
    shape = (N_TIME, 1, N_ANT, 2)
    amp = 1 + 0.15 * np.cos(2 * np.pi * k / 150 + rng.uniform(0, 2 * np.pi, shape))
    phase = (rng.uniform(-np.pi, np.pi, shape) + rng.normal(0, 0.08, shape) * k * (not flat)
             + 0.4 * np.sin(2 * np.pi * k / 120 + rng.uniform(0, 2 * np.pi, shape)))
    return amp * np.exp(1j * phase)


def as_dataset(g, flag=None):
    dims = ("gain_time", "gain_frequency", "antenna_name", "receptor")
    f = 1.2e8 + 1e5 * np.arange(g.shape[1])
    t = 1.7e9 + 60.0 * np.arange(g.shape[0])
    return xr.Dataset(
        {"GAIN": (dims, g), "GAIN_FLAG": (dims, np.zeros(g.shape, bool) if flag is None
                                          else flag)},
        coords={"gain_time": t, "gain_time_lower": ("gain_time", t - 30),
                "gain_time_upper": ("gain_time", t + 30), "gain_frequency": f,
                "gain_frequency_lower": ("gain_frequency", f - 5e4),
                "gain_frequency_upper": ("gain_frequency", f + 5e4),
                "antenna_name": [f"A{i}" for i in range(g.shape[2])], "receptor": ["X", "Y"]},
        attrs={"type": "gain", "mode": "diagonal_complex", "ref_antenna": "A0"})


def referenced(g, ref=0):
    z = g[:, :, ref]
    return g * (np.conj(z) / abs(z))[:, :, None]


def noisy(g, seed=1):
    rng = np.random.default_rng(seed)
    return g + SIGMA * (rng.standard_normal(g.shape) + 1j * rng.standard_normal(g.shape))


def rms_error(g, truth, sl=slice(None)):
    return np.sqrt(np.mean(np.abs(referenced(g) - referenced(truth))[:, sl, 1:] ** 2))


def savgol_gain(w):
    return np.sqrt(3 * (3 * w**2 - 7) / (4 * w * (w**2 - 4)))


def gaussian_gain(fwhm):
    s = fwhm / (2 * np.sqrt(2 * np.log(2)))
    k = np.exp(-0.5 * (np.arange(-np.ceil(3 * s), np.ceil(3 * s) + 1) / s) ** 2)
    return np.sqrt(np.sum(k**2)) / np.sum(k)


@pytest.mark.parametrize(("cfg", "expected"), [
    ({"method": "savgol", "window": 9}, savgol_gain(9)),
    ({"method": "savgol", "window": 15}, savgol_gain(15)),
    ({"method": "gaussian", "window": 5}, gaussian_gain(5)),
    ({"method": "median", "window": 9}, np.sqrt(np.pi / (2 * 9))),
])
def test_noise_drops_by_the_filter_gain(cfg, expected):
    truth = truth_gains(flat=cfg["method"] == "median")
    raw = noisy(truth)
    out = smooth(as_dataset(raw), SmoothConfig(**cfg, outlier_sigma=None)).compute()
    interior = slice(10, N_FREQ - 10)
    ratio = rms_error(out["GAIN"].values, truth, interior) / rms_error(raw, truth, interior)
    # the error is referenced to A0, whose noise is smoothed with the same filter
    assert ratio == pytest.approx(expected, rel=0.12)
    # edges: still no worse than the raw gains
    assert rms_error(out["GAIN"].values, truth) < 1.1 * rms_error(raw, truth)
    assert not out["GAIN_FLAG"].values.any()


def test_flagged_cells_are_filled_and_optionally_unflagged():
    truth = truth_gains()
    raw = noisy(truth)
    flag = np.zeros(raw.shape, bool)
    flag[:, 40:46, 3] = True             # a gap of six cells on one antenna
    flag[1, 70, :] = True                # one cell on every antenna (the reference too)
    raw[flag] = 1.0                      # what solve writes for flagged gains
    gains = as_dataset(raw, flag)
    out = smooth(gains, SmoothConfig(outlier_sigma=None)).compute()
    g = referenced(out["GAIN"].values)
    t = referenced(truth)
    assert np.abs(g - t)[flag].max() < 6 * SIGMA
    np.testing.assert_array_equal(out["GAIN_FLAG"].values, flag)
    out = smooth(gains, SmoothConfig(outlier_sigma=None, unflag_filled=True)).compute()
    assert not out["GAIN_FLAG"].values.any()
    # a fully flagged antenna stays flagged, gain 1
    flag[:, :, 5] = True
    out = smooth(as_dataset(raw, flag), SmoothConfig(unflag_filled=True)).compute()
    assert out["GAIN_FLAG"].values[:, :, 5].all()
    np.testing.assert_array_equal(out["GAIN"].values[:, :, 5], 1.0)


def test_outliers_are_rejected_and_flagged():
    truth = truth_gains()
    raw = noisy(truth)
    bad = np.zeros(raw.shape, bool)
    bad[0, 30, 2, 0] = bad[2, 60, 6, 1] = bad[1, 12, 4, 1] = True
    raw[0, 30, 2, 0] *= 3.0
    raw[2, 60, 6, 1] *= np.exp(2j)
    raw[1, 12, 4, 1] *= 0.5 * np.exp(-1j)
    out = smooth(as_dataset(raw), SmoothConfig(outlier_sigma=5.0)).compute()
    err = np.abs(referenced(out["GAIN"].values) - referenced(truth))
    assert err[bad].max() < 5 * SIGMA
    flags = out["GAIN_FLAG"].values
    assert flags[bad].all()
    assert flags.sum() < 3 + 0.002 * flags.size  # few false positives
    without = smooth(as_dataset(raw), SmoothConfig(outlier_sigma=None)).compute()
    errw = np.abs(referenced(without["GAIN"].values) - referenced(truth))
    assert errw[bad].max() > 10 * SIGMA


def test_phase_wraps_are_followed():
    slopes = np.array([0.0, 0.9, -2.0])[None, None, :, None]  # rad per cell
    g = np.exp(1j * slopes * np.arange(N_FREQ)[None, :, None, None]) * np.ones((1, 1, 1, 2))
    out = smooth(as_dataset(g)).compute()
    np.testing.assert_allclose(out["GAIN"].values, g, atol=1e-9)


def test_full_jones_elements_are_smoothed():
    truth = truth_gains()
    full = np.zeros(truth.shape + (2,), complex)
    full[..., 0, 0], full[..., 1, 1] = truth[..., 0], truth[..., 1]
    full[..., 0, 1] = 0.1 * truth[..., 0]
    full[..., 1, 0] = 0.1 * truth[..., 1]
    dims = ("gain_time", "gain_frequency", "antenna_name", "receptor", "receptor2")
    gains = as_dataset(truth).drop_vars(["GAIN", "GAIN_FLAG"]).assign(
        GAIN=(dims, full), GAIN_FLAG=(dims, np.zeros(full.shape, bool))).assign_coords(
        receptor2=["X", "Y"])
    out = smooth(gains).compute()
    z = full[:, :, 0, 0, 0]
    ref = full * (np.conj(z) / abs(z))[:, :, None, None, None]
    np.testing.assert_allclose(out["GAIN"].values, ref, atol=1e-3)


def test_graph_is_lazy_and_equals_numpy_path():
    raw = noisy(truth_gains())
    gains = as_dataset(raw).chunk({"gain_time": 1})
    with dask.config.set(scheduler=_raise_on_compute):
        out = smooth(gains)
    assert isinstance(out["GAIN"].data, dask.array.Array)
    assert out["GAIN"].chunks[0] == (1, 1, 1)
    whole = smooth(as_dataset(raw)).compute()
    np.testing.assert_allclose(out["GAIN"].values, whole["GAIN"].values, rtol=1e-12)
    assert out.attrs["smooth"]["method"] == "savgol"


def test_unwrap_valid_skips_flagged_samples():
    phase = np.angle(np.exp(1j * 1.0 * np.arange(10)))
    valid = np.ones(10, bool)
    valid[[0, 4, 5]] = False
    out = unwrap_valid(np.where(valid, phase, 7.0), valid)
    np.testing.assert_allclose(out[valid] - out[valid][0], np.arange(10.0)[valid] - 1.0)
    assert np.isnan(out[~valid]).all()


def test_errors():
    with pytest.raises(ValidationError, match="odd"):
        SmoothConfig(window=8)
    with pytest.raises(ValidationError, match="polyorder"):
        SmoothConfig(window=3, polyorder=3)
    gains = as_dataset(truth_gains())
    with pytest.raises(SmoothError, match="reference antenna 'XX'"):
        smooth(gains, SmoothConfig(ref_antenna="XX"))
    with pytest.raises(SmoothError, match="GAIN"):
        smooth(gains.drop_vars("GAIN_FLAG"))
