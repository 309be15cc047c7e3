"""SumThreshold and SIR kernels against slow, obviously correct references."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from daskcal.kernels import sumthreshold as st

# --------------------------------------------------------------------------- references


def reference_pass(values, flags, window, threshold, axis):
    """One SumThreshold pass, straight from the definition (loops, no cleverness).

    Every window of ``window`` consecutive samples along ``axis`` whose usable
    (unflagged) samples, at least one, sum to more than ``count * threshold`` in
    absolute value gets all its samples flagged. Flags of the input only.
    """
    v = values if axis == 0 else values.T
    f = flags if axis == 0 else flags.T
    out = f.copy()
    n, m = v.shape
    for j in range(m):
        for start in range(n - window + 1):
            total = 0.0
            count = 0
            for t in range(start, start + window):
                if not f[t, j]:
                    total += float(v[t, j])
                    count += 1
            if count > 0 and abs(total) > count * threshold:
                for t in range(start, start + window):
                    out[t, j] = True
    return out if axis == 0 else out.T


def reference_sumthreshold(values, flags, threshold, windows, rho, axes=(0, 1)):
    """All windows in order along each axis, directions from the same input flags, ORed."""
    result = flags.copy()
    for axis in axes:
        cur = flags.copy()
        for window in windows:
            chi = threshold / rho ** np.log2(window)
            cur = reference_pass(values, cur, window, chi, axis)
        result |= cur
    return result


def reference_sir(flags, eta, ignore=None):
    """SIR from its definition, O(N^2) intervals, exact rational arithmetic.

    ``y`` is flagged iff some interval ``[a, b)`` containing it has
    ``n_unflagged <= eta * (n_flagged + n_unflagged)`` over non-ignored samples.
    """
    n = len(flags)
    ignore = np.zeros(n, bool) if ignore is None else ignore
    eta = Fraction(eta).limit_denominator(10_000)
    out = np.zeros(n, bool)
    for a in range(n):
        for b in range(a + 1, n + 1):
            n_flag = sum(1 for i in range(a, b) if flags[i] and not ignore[i])
            n_free = sum(1 for i in range(a, b) if not flags[i] and not ignore[i])
            if n_free <= eta * (n_flag + n_free):
                out[a:b] = True
    return out


def _dyadic(rng, shape, dtype):
    """Random values that are multiples of 1/256 in (-16, 16): every partial sum is exact."""
    return (rng.integers(-4095, 4096, shape) / 256.0).astype(dtype)


# --------------------------------------------------------------------------- SumThreshold


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pass_equals_reference_on_random_planes(dtype):
    rng = np.random.default_rng(1)
    for trial in range(60):
        n, m = rng.integers(1, 30, 2)
        values = rng.normal(0, 1, (n, m)).astype(dtype)
        values[rng.random((n, m)) < 0.05] *= 20  # some outliers
        flags = rng.random((n, m)) < rng.uniform(0, 0.5)
        window = int(rng.integers(1, 20))
        threshold = float(rng.uniform(0.1, 3.0))
        axis = int(rng.integers(0, 2))
        got = st.sumthreshold_pass(values, flags, window, threshold, axis)
        want = reference_pass(values, flags, window, threshold, axis)
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pass_exact_with_ties(dtype):
    """Dyadic values and thresholds make sums exact, so ties at the threshold occur."""
    rng = np.random.default_rng(2)
    for _ in range(40):
        n, m = rng.integers(1, 25, 2)
        values = _dyadic(rng, (n, m), dtype)
        flags = rng.random((n, m)) < 0.3
        window = int(rng.integers(1, 9))
        threshold = float(rng.integers(1, 1024)) / 256.0
        for axis in (0, 1):
            got = st.sumthreshold_pass(values, flags, window, threshold, axis)
            np.testing.assert_array_equal(got, reference_pass(values, flags, window,
                                                              threshold, axis))


def test_pass_long_lines_resync():
    """Lines much longer than the resynchronisation period, with huge outliers."""
    rng = np.random.default_rng(3)
    values = _dyadic(rng, (3 * st._RESYNC + 7, 3), np.float32)
    values[100, 0] = 15.99
    flags = rng.random(values.shape) < 0.1
    for window in (2, 5, 64):
        got = st.sumthreshold_pass(values, flags, window, 1.5, 0)
        np.testing.assert_array_equal(got, reference_pass(values, flags, window, 1.5, 0))


def test_pass_edge_cases():
    values = np.ones((3, 4), np.float32)
    flags = np.zeros((3, 4), bool)
    # window longer than the axis: nothing can be flagged
    assert not st.sumthreshold_pass(values, flags, 5, 0.5, 0).any()
    # all flagged: stays flagged, nothing else happens
    assert st.sumthreshold_pass(values, ~flags, 2, 0.5, 1).all()
    # strictly greater: a window exactly at the threshold is not flagged
    assert not st.sumthreshold_pass(values, flags, 2, 1.0, 1).any()
    assert st.sumthreshold_pass(values, flags, 2, 0.999, 1).all()
    # negative excursions count as well
    assert st.sumthreshold_pass(-values, flags, 1, 0.5, 0).all()


def test_full_sumthreshold_equals_reference():
    rng = np.random.default_rng(4)
    for trial in range(4):
        n, m = rng.integers(5, 30, 2)
        values = rng.normal(0, 1, (n, m)).astype(np.float32)
        values[rng.integers(0, n), :] += 2.0  # a weak broadband line
        values[:, rng.integers(0, m)] += 1.5  # a weak narrowband line
        flags = rng.random((n, m)) < 0.1
        windows = (1, 2, 4, 8)
        for axes in ((0, 1), (0,), (1,)):
            got = st.sumthreshold(values, flags, threshold=4.0, windows=windows, axes=axes)
            want = reference_sumthreshold(values, flags, 4.0, windows, 1.5, axes)
            np.testing.assert_array_equal(got, want, err_msg=f"trial {trial} axes {axes}")


def test_sumthreshold_stack_and_per_plane_thresholds():
    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, (3, 20, 30))
    flags = rng.random(values.shape) < 0.05
    thresholds = np.array([2.0, 3.0, 100.0])
    got = st.sumthreshold(values, flags, threshold=thresholds)
    for i in range(3):
        want = reference_sumthreshold(values[i], flags[i], thresholds[i], st.DEFAULT_WINDOWS, 1.5)
        np.testing.assert_array_equal(got[i], want)
    np.testing.assert_array_equal(got[2], flags[2])


def reference_interleaved(values, flags, thresholds, windows):
    """AOFlagger's order: per window, the time pass then the frequency pass, one shared mask."""
    cur = flags.copy()
    for window, chi in zip(windows, thresholds, strict=True):
        cur = reference_pass(values, cur, window, chi, 0)
        cur = reference_pass(values, cur, window, chi, 1)
    return cur


@pytest.mark.parametrize("windows", [(1, 2, 4, 8), (2, 4, 8), (1, 3, 16)])
def test_interleaved_plane_equals_reference(windows):
    """The strategy's kernel: shared mask, mirrored layouts, ``M = 1`` as one pass."""
    rng = np.random.default_rng(9)
    for trial in range(12):
        n, m = rng.integers(3, 40, 2)
        values = _dyadic(rng, (n, m), np.float32)
        values[rng.integers(0, n), :] += 3.0  # broadband
        values[:, rng.integers(0, m)] -= 2.5  # narrowband, negative
        flags = rng.random((n, m)) < 0.1
        chi = st.sumthreshold_thresholds(float(rng.integers(512, 2048)) / 256.0, windows, 1.5)
        got, got_t = flags.copy(), np.ascontiguousarray(flags.T)
        st._st_plane_interleaved(values, np.ascontiguousarray(values.T), got, got_t,
                                 np.asarray(windows), chi, np.empty_like(got),
                                 np.empty_like(got_t))
        want = reference_interleaved(values, flags, chi, windows)
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")
        np.testing.assert_array_equal(got_t, want.T, err_msg=f"trial {trial}")


def test_window_sums_resync_with_long_windows():
    """Exact window sums at a resynchronisation point, long windows, flags in them."""
    rng = np.random.default_rng(10)
    values = _dyadic(rng, (2 * st._RESYNC + 90, 5), np.float32)
    values[st._RESYNC + 3, 2] = 15.0
    flags = rng.random(values.shape) < 0.2
    for window in (64, 80):
        got = st.sumthreshold_pass(values, flags, window, 0.3, 0)
        np.testing.assert_array_equal(got, reference_pass(values, flags, window, 0.3, 0))


def test_thresholds_follow_rho_law():
    chi = st.sumthreshold_thresholds(6.0, (1, 2, 4, 64), 1.5)
    np.testing.assert_allclose(chi, 6.0 / 1.5 ** np.array([0, 1, 2, 6]))


def test_sumthreshold_finds_weak_extended_line():
    rng = np.random.default_rng(6)
    values = rng.normal(0, 1, (256, 128)).astype(np.float32)
    values[:, 40] += 1.0  # 1 sigma per sample: invisible to M=1, obvious to M=64
    flags = st.sumthreshold(values, threshold=6.0)
    assert flags[:, 40].mean() > 0.95
    assert np.delete(flags, 40, axis=1).mean() < 0.01


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": np.zeros((3, 3), np.int32)}, "float32 or float64"),
        ({"values": np.zeros(3, np.float32)}, "2-D"),
        ({"flags": np.zeros((3, 3), np.int8)}, "bool"),
        ({"flags": np.zeros((2, 3), bool)}, "shape"),
        ({"window": 0}, "window"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"axis": 2}, "axis"),
    ],
)
def test_pass_validation(kwargs, match):
    args = {"values": np.zeros((3, 3), np.float32), "flags": None, "window": 2,
            "threshold": 1.0, "axis": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        st.sumthreshold_pass(**args)


def test_sumthreshold_validation():
    v = np.zeros((3, 3))
    with pytest.raises(ValueError, match="axes"):
        st.sumthreshold(v, threshold=1.0, axes=(2,))
    with pytest.raises(ValueError, match="windows"):
        st.sumthreshold(v, threshold=1.0, windows=())
    with pytest.raises(ValueError, match="rho"):
        st.sumthreshold(v, threshold=1.0, rho=0.5)
    with pytest.raises(ValueError, match="n_time, n_chan"):
        st.sumthreshold(np.zeros(3), threshold=1.0)


# --------------------------------------------------------------------------- SIR


def test_sir_equals_bruteforce_definition():
    rng = np.random.default_rng(7)
    for trial in range(150):
        n = int(rng.integers(1, 40))
        flags = rng.random(n) < rng.uniform(0, 1)
        ignore = rng.random(n) < 0.15 if trial % 2 else None
        eta = float(rng.choice([0.0, 0.1, 0.2, 0.25, 0.5, 1.0, rng.uniform(0, 1)]))
        got = st.sir_operator(flags, eta, ignore=ignore)
        np.testing.assert_array_equal(got, reference_sir(flags, eta, ignore),
                                      err_msg=f"trial {trial} eta {eta}")


def test_sir_exact_ties_and_growth():
    # 4 flagged + 1 unflagged: exactly eta = 0.2 unflagged -> the gap is filled
    flags = np.array([1, 1, 0, 1, 1], bool)
    assert st.sir_operator(flags, 0.2).all()
    # a run of 8 flagged grows by eta / (1 - eta) * 8 = 2 samples on each side
    flags = np.zeros(20, bool)
    flags[6:14] = True
    got = st.sir_operator(flags, 0.2)
    np.testing.assert_array_equal(np.flatnonzero(got), np.arange(4, 16))
    # eta = 0 changes nothing; ignored samples come out flagged
    ignore = np.zeros(20, bool)
    ignore[0] = True
    np.testing.assert_array_equal(st.sir_operator(flags, 0.0, ignore=ignore), flags | ignore)


def test_sir_axes_of_planes():
    rng = np.random.default_rng(8)
    flags = rng.random((12, 9)) < 0.4
    ignore = rng.random((12, 9)) < 0.1
    along_time = st.sir_operator(flags, 0.3, axis=0, ignore=ignore)
    for j in range(9):
        np.testing.assert_array_equal(along_time[:, j],
                                      reference_sir(flags[:, j], 0.3, ignore[:, j]))
    both = st.sir_plane(flags, 0.3, 0.1, ignore=ignore)
    want = along_time | st.sir_operator(flags, 0.1, axis=1, ignore=ignore)
    np.testing.assert_array_equal(both, want)


def test_sir_validation():
    with pytest.raises(ValueError, match="eta"):
        st.sir_operator(np.zeros(3, bool), 1.5)
    with pytest.raises(ValueError, match="bool"):
        st.sir_operator(np.zeros(3), 0.2)
    with pytest.raises(ValueError, match="axis"):
        st.sir_operator(np.zeros((3, 3), bool), 0.2, axis=2)
    with pytest.raises(ValueError, match="ignore"):
        st.sir_operator(np.zeros(3, bool), 0.2, ignore=np.zeros(4, bool))
