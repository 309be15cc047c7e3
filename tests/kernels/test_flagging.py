"""MAD flagger, masked background fits and the RFI strategy on synthetic observations."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.kernels.flagging import (
    mad_flag,
    masked_smooth,
    polarization_groups,
    rfi_flag,
    rfi_flag_planes,
)
from daskcal.kernels.rfi_background import background_grid, box_halves
from daskcal.testing.rfi_planes import RFI_KINDS, detection_scores, simulate_plane

# --------------------------------------------------------------------------- MAD


def reference_mad(values, flags, threshold, max_iterations):
    """Iterated MAD clipping of one 1-D sample, with numpy."""
    flags = flags.copy()
    for _ in range(max_iterations):
        good = values[~flags]
        if good.size == 0:
            break
        med = np.median(good)
        mad = np.median(np.abs(good - med))
        if not mad > 0:
            break
        new = ~flags & (np.abs(values - med) > threshold * 1.482602218505602 * mad)
        if not new.any():
            break
        flags |= new
    return flags


@pytest.mark.parametrize("axis", [None, 0, 1, (1, 2), (0, 2)])
def test_mad_flag_equals_numpy(axis):
    rng = np.random.default_rng(11)
    values = rng.standard_t(3, (6, 40, 30)).astype(np.float32)  # heavy tails
    flags = rng.random(values.shape) < 0.05
    got = mad_flag(values, flags, threshold=4.0, axis=axis, max_iterations=7)
    axes = tuple(range(3)) if axis is None else np.atleast_1d(axis)
    keep = [a for a in range(3) if a not in axes]
    v = np.moveaxis(values.astype(np.float64), keep, range(len(keep)))
    f = np.moveaxis(flags, keep, range(len(keep)))
    want = np.empty_like(f)
    for idx in np.ndindex(v.shape[: len(keep)]):
        want[idx] = reference_mad(v[idx].ravel(), f[idx].ravel(), 4.0, 7).reshape(v[idx].shape)
    want = np.moveaxis(want, range(len(keep)), keep)
    np.testing.assert_array_equal(got, want)
    assert got[flags].all()


def test_mad_flag_complex_nan_and_edge_cases():
    rng = np.random.default_rng(12)
    vis = (rng.normal(size=500) + 1j * rng.normal(size=500)).astype(np.complex64)
    vis[[3, 77]] = 40.0
    vis[5] = np.nan
    got = mad_flag(vis)
    assert got[[3, 5, 77]].all()
    np.testing.assert_array_equal(got, reference_mad(np.abs(vis).astype(np.float64),
                                                     ~np.isfinite(vis), 5.0, 10))
    # constant majority: MAD is 0, nothing is flagged; all flagged stays all flagged
    assert not mad_flag(np.r_[np.zeros(10), 5.0]).any()
    assert mad_flag(np.ones(4), np.ones(4, bool)).all()
    assert mad_flag(np.zeros((0, 3)), axis=1).shape == (0, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": np.zeros(3, np.int64)}, "floating"),
        ({"flags": np.zeros(4, bool)}, "flags"),
        ({"threshold": -1.0}, "threshold"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"axis": 3}, "axis"),
    ],
)
def test_mad_flag_validation(kwargs, match):
    args = {"values": np.zeros(3), **kwargs}
    with pytest.raises(ValueError, match=match):
        mad_flag(**args)


def test_median_mad_equals_numpy_on_large_samples():
    """The sample-bracketed selection (used above 1 024 samples) and its fallbacks."""
    from daskcal.kernels._robust import _median_mad

    rng = np.random.default_rng(17)
    samples = [rng.normal(size=9_601), rng.normal(size=4_096), rng.integers(-3, 4, 5_000),
               np.sort(rng.normal(size=3_001)), np.r_[np.zeros(3_000), rng.normal(size=2_000)],
               np.r_[np.full(2_000, 5.0), np.full(2_000, -5.0)], np.ones(2_048)]
    for values in samples:
        values = values.astype(np.float64)
        med = np.median(values)
        assert _median_mad(values.copy()) == (med, np.median(np.abs(values - med)))


# --------------------------------------------------------------------------- background


def _kernel(sigma):
    kernel = np.ones(1)
    for h in box_halves(sigma):
        kernel = np.convolve(kernel, np.ones(2 * h + 1))
    return kernel


def _convolve2(a, k_t, k_f):
    a = np.apply_along_axis(lambda x: np.convolve(x, k_t, mode="same"), 0, a)
    return np.apply_along_axis(lambda x: np.convolve(x, k_f, mode="same"), 1, a)


def test_masked_smooth_order0_is_normalised_convolution():
    rng = np.random.default_rng(13)
    values = rng.normal(5.0, 1.0, (60, 45))
    flags = rng.random(values.shape) < 0.2
    got = masked_smooth(values, flags, sigma=(3.0, 2.0), block=(1, 1), order=0)
    k_t, k_f = _kernel(3.0), _kernel(2.0)
    w = (~flags).astype(float)
    want = _convolve2(w * values, k_t, k_f) / _convolve2(w, k_t, k_f)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_masked_smooth_order1_is_local_plane_fit():
    rng = np.random.default_rng(14)
    values = rng.normal(0.0, 1.0, (40, 36))
    flags = rng.random(values.shape) < 0.1
    got = masked_smooth(values, flags, sigma=(3.0, 3.0), block=(1, 1), order=1)
    k = _kernel(3.0)
    h = len(k) // 2
    t, f = np.mgrid[:40, :36]
    for t0, f0 in [(20, 18), (0, 0), (39, 10), (5, 35), (22, 1)]:
        w = np.zeros((40, 36))
        for dt in range(-h, h + 1):
            for df in range(-h, h + 1):
                if 0 <= t0 + dt < 40 and 0 <= f0 + df < 36:
                    w[t0 + dt, f0 + df] = k[dt + h] * k[df + h]
        w *= ~flags
        design = np.stack([np.ones(w.size), (t - t0).ravel(), (f - f0).ravel()], axis=1)
        sw = np.sqrt(w.ravel())
        coef = np.linalg.lstsq(design * sw[:, None], values.ravel() * sw, rcond=None)[0]
        assert got[t0, f0] == pytest.approx(coef[0], abs=1e-9)


def test_masked_smooth_reproduces_planes_through_holes_and_edges():
    t, f = np.mgrid[:203, :157]
    surface = (3.0 + 0.2 * t - 0.1 * f) * np.exp(0.3j)
    flags = np.zeros(surface.shape, bool)
    flags[:, 60:95] = True  # a wide narrowband hole
    flags[100:130, :] = True  # a wide broadband hole
    flags[np.random.default_rng(15).random(flags.shape) < 0.1] = True
    got = masked_smooth(surface.astype(np.complex128), flags, sigma=(6.0, 6.0))
    np.testing.assert_allclose(got, surface, rtol=0, atol=1e-6)  # float32 interpolation weights
    assert background_grid(surface.shape).block == (6, 6)
    all_flagged = masked_smooth(surface.real, np.ones(surface.shape, bool))
    np.testing.assert_array_equal(all_flagged, 0.0)


def test_masked_smooth_validation():
    with pytest.raises(ValueError, match="2-D"):
        masked_smooth(np.zeros(3))
    with pytest.raises(ValueError, match="sigma"):
        masked_smooth(np.zeros((3, 3)), sigma=(-1.0, 1.0))
    with pytest.raises(ValueError, match="order"):
        masked_smooth(np.zeros((3, 3)), order=2)
    with pytest.raises(ValueError, match="block"):
        masked_smooth(np.zeros((3, 3)), block=(0, 1))


# --------------------------------------------------------------------------- RFI strategy


@pytest.fixture(scope="module")
def simulated():
    """Two RFI planes and one clean plane, 512 times x 512 channels x 4 polarisations."""
    return [simulate_plane(512, 512, seed=s) for s in (1, 2)], simulate_plane(
        512, 512, seed=3, rfi=False)


def test_rfi_recall_and_false_positives(simulated):
    planes, clean = simulated
    for sim in planes:
        flags = rfi_flag(sim.visibility[:, None])[:, 0]
        scores = detection_scores(flags, sim)
        for kind in RFI_KINDS:
            assert scores[f"recall_{kind}"] >= 0.95, (kind, scores)
        assert scores["fpr"] <= 0.01, scores
        # the same decision on every polarisation
        assert (flags == flags[..., :1]).all()
    clean_flags = rfi_flag(clean.visibility[:, None])
    assert clean_flags.mean() <= 0.01
    assert not clean.truth.any()


def test_rfi_amplitude_representation_and_pol_groups(simulated):
    (sim, _), _ = simulated
    # the groups sum polarisations of very different source brightness: the complex
    # statistic (the default before the amplitude one) keeps weak RFI visible there
    for strategy in ({"representation": "complex"}, {"pol_groups": "stokes"},
                     *({"pol_groups": g, "representation": "complex"}
                       for g in ("stokes", "all", [(0,), (3,)]))):
        scores = detection_scores(rfi_flag(sim.visibility[:, None], **strategy)[:, 0], sim)
        for kind in ("narrowband", "broadband", "impulsive"):
            assert scores[f"recall_{kind}"] >= 0.95, (strategy, kind, scores)
        assert scores["fpr"] <= 0.02, (strategy, scores)
    assert polarization_groups("stokes", 4) == [(0, 3), (1, 2)]
    assert polarization_groups("stokes", 2) == [(0, 1)]
    assert polarization_groups("each", 2) == [(0,), (1,)]


def test_rfi_baselines_are_independent_and_input_flags_kept(simulated):
    (sim_a, sim_b), _ = simulated
    block = np.stack([sim_a.visibility[:200, :128], sim_b.visibility[:200, :128]], axis=1)
    flags = np.zeros(block.shape, bool)
    flags[10:20, 1, 5:9, 2] = True  # flagged on one polarisation only
    block[50, 0, 7, 1] = np.nan
    got = rfi_flag(block, flags)
    for b in range(2):
        alone = rfi_flag(block[:, b:b + 1], flags[:, b:b + 1])
        np.testing.assert_array_equal(got[:, b:b + 1], alone)
    assert got[flags].all()
    assert got[50, 0, 7, 1]
    # a single plane through the plane-level API gives the same detections
    one_pol = rfi_flag(block[:, :1, :, :1], flags[:, :1, :, :1])[:, 0, :, 0]
    np.testing.assert_array_equal(one_pol, rfi_flag_planes(block[:, 0, :, 0], flags[:, 0, :, 0]))


def test_rfi_degenerate_inputs():
    assert rfi_flag(np.zeros((0, 1, 4, 2), np.complex64)).shape == (0, 1, 4, 2)
    constant = np.ones((40, 1, 30, 1), np.complex64)
    assert not rfi_flag(constant).any()
    all_flagged = np.ones(constant.shape, bool)
    assert rfi_flag(constant, all_flagged).all()
    tiny = np.random.default_rng(16).normal(size=(3, 1, 2, 1)).astype(np.complex64)
    assert rfi_flag(tiny).shape == tiny.shape


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"visibility": np.zeros((4, 4, 4), np.complex64)}, "n_time, n_baseline"),
        ({"visibility": np.zeros((4, 1, 4, 1), np.float32)}, "complex"),
        ({"flags": np.zeros((4, 1, 4, 2), bool)}, "flags"),
        ({"pol_groups": "cross"}, "pol_groups"),
        ({"pol_groups": [(0, 5)]}, "out of range"),
        ({"base_threshold": 0.0}, "base_threshold"),
        ({"sensitivity_steps": ()}, "sensitivity_steps"),
        ({"representation": "phase"}, "representation"),
        ({"sir_eta": 2.0}, "eta"),
        ({"smoothing_sigma": (1.0, -1.0)}, "sigma"),
        ({"windows": (0, 2)}, "window"),
        ({"threshold": 3.0}, "unknown"),
    ],
)
def test_rfi_flag_validation(kwargs, match):
    args = {"visibility": np.zeros((4, 1, 4, 1), np.complex64), **kwargs}
    with pytest.raises(ValueError, match=match):
        rfi_flag(**args)


def test_simulation_truth():
    sim = simulate_plane(64, 48, 2, seed=4)
    assert sim.visibility.shape == (64, 48, 2) and sim.visibility.dtype == np.complex64
    assert set(sim.kinds) == set(RFI_KINDS)
    assert sim.truth.any() and 0.0 < sim.truth.mean() < 0.2
    perfect = detection_scores(sim.truth, sim)
    assert perfect["recall"] == 1.0 and perfect["fpr"] == 0.0
    with pytest.raises(ValueError):
        simulate_plane(4, 48)
