"""Kernel design: ES kernel and its Fourier transform, w-projection kernels, plans."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.kernels.gridding import make_plan
from daskcal.kernels.gridding.es_kernel import (
    alias_error,
    es_fourier,
    es_kernel,
    kernel_taps,
    make_es_kernel,
    pp_fourier,
    tap_offsets,
)
from daskcal.kernels.gridding.wkernels import (
    design_axis,
    kernel_dense,
    kernel_sampled,
    quadrature_tables,
)
from daskcal.kernels.gridding.wtaps import fft_inplace, twiddles, wp_taps


def _trapezoid_fourier(f, lo, hi, xi, n=400_001):
    d = np.linspace(lo, hi, n)
    return np.array([np.trapezoid(f(d) * np.cos(2 * np.pi * x * d), d) for x in xi])


def test_es_fourier_matches_direct_integration():
    xi = np.array([0.0, 0.2, 0.45, 1.3, 2.7])
    ref = _trapezoid_fourier(lambda d: es_kernel(d, 8, 18.0), -4, 4, xi)
    np.testing.assert_allclose(es_fourier(xi, 8, 18.0), ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("support", "sigma"), [(4, 2.0), (7, 1.5), (10, 1.25)])
def test_polynomial_kernel_and_its_exact_transform(support, sigma):
    k = make_es_kernel(support, sigma)
    y = np.linspace(-1, 1, 301)[:-1]
    taps = kernel_taps(k.coeffs, y)
    exact = es_kernel(tap_offsets(y, support), support, k.beta)
    assert np.abs(taps - exact).max() < 10 * k.error
    # the correction is the transform of the polynomial kernel actually used

    def pp(d):
        x = d + 0.5 * support  # offset from the first tap
        j = np.clip(np.floor(x).astype(int), 0, support - 1)
        vals = kernel_taps(k.coeffs, 2.0 * (x - j) - 1.0)
        out = vals[np.arange(d.size), j]
        out[(d < -0.5 * support) | (d >= 0.5 * support)] = 0.0
        return out

    xi = np.array([0.0, 0.5 / sigma, 1.0 - 0.5 / sigma, 2.1])
    ref = _trapezoid_fourier(pp, -0.5 * support, 0.5 * support, xi)
    np.testing.assert_allclose(pp_fourier(k.coeffs, xi), ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize(("support", "sigma"), [(6, 2.0), (9, 1.25), (12, 1.5)])
def test_alias_error_estimate_bounds_a_single_visibility(support, sigma):
    """Gridding one visibility in 1D and correcting: the error is the estimate (a bound)."""
    k = make_es_kernel(support, sigma)
    xi = np.linspace(-0.5 / sigma, 0.5 / sigma, 101)
    worst = 0.0
    for g in np.random.default_rng(0).uniform(0, 40, 60):
        i0 = np.ceil(g - support / 2)
        taps = kernel_taps(k.coeffs, np.array(2 * (i0 - g + support / 2) - 1))
        cells = i0 + np.arange(support)
        got = (taps * np.exp(2j * np.pi * np.outer(xi, cells))).sum(1) / k.fourier(xi)
        worst = max(worst, np.abs(got - np.exp(2j * np.pi * g * xi)).max())
    assert worst <= 1.05 * k.error
    assert worst >= 0.5 * k.error  # and it is tight
    assert alias_error(support, k.beta, sigma) <= k.error * 1.01


def test_errors_fall_with_support_and_oversampling():
    e = [make_es_kernel(w, 1.5).error for w in (4, 6, 8, 10)]
    assert all(a > 10 * b for a, b in zip(e, e[1:], strict=False))
    assert make_es_kernel(8, 2.0).error < make_es_kernel(8, 1.25).error
    with pytest.raises(ValueError):
        make_es_kernel(40, 2.0)
    with pytest.raises(ValueError):
        make_es_kernel(8, 1.0)


def test_wproject_kernels_fast_rule_and_numba_taps():
    scale, w = 0.0545, 25_000.0
    axis = design_axis(1.25, scale, 30_000.0, 1e-5)
    assert np.all(np.diff(axis.support_table) >= 0) and axis.truncation_error <= 1e-5
    k = kernel_sampled(w, scale, axis.xi_c, axis.beta, 256, 4)
    d = (np.arange(k.size) - k.size // 2) / 4
    sel = np.abs(d) < 50
    ref = kernel_dense(d[sel], w, scale, axis.xi_c, axis.beta)
    # the midpoint rule's only errors: the window's exp(-beta) edge and the periodicity
    np.testing.assert_allclose(k[sel], ref, rtol=0, atol=1e-8 * np.abs(ref).max())
    # per-visibility taps from the recurrence + FFT equal the dense rule
    amp, aoff, xi0 = quadrature_tables(axis)
    e = int(np.searchsorted(axis.w_table, w))
    support, length = int(axis.support_table[e]), int(axis.fft_len_table[e])
    post = np.exp(-2j * np.pi * xi0[e] * np.arange(length))
    tw = twiddles(int(axis.fft_len_table.max()))
    out_re, out_im = np.zeros(support + 8), np.zeros(support + 8)
    for g in (10.3, 1000.77):
        i0 = wp_taps(g, w, support, length, amp[aoff[e]:aoff[e + 1]], xi0[e], scale,
                     post.real.copy(), post.imag.copy(), tw[0], tw[1], np.empty(length),
                     np.empty(length), out_re, out_im)
        ref = kernel_dense(i0 + np.arange(support) - g, w, scale, axis.xi_c, axis.beta)
        got = out_re[:support] + 1j * out_im[:support]
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8 * np.abs(ref).max())
        assert np.all(out_re[support:] == 0)


def test_fft_inplace():
    rng = np.random.default_rng(0)
    tw = twiddles(64)
    for n in (2, 16, 64):
        x = rng.normal(size=n) + 1j * rng.normal(size=n)
        re, im = x.real.copy(), x.imag.copy()
        fft_inplace(re, im, n, tw[0], tw[1])
        np.testing.assert_allclose(re + 1j * im, np.fft.fft(x), atol=1e-12)


def test_plans():
    pix = np.radians(2.5) / 512
    p = make_plan(512, 512, pix, pix, 1e-4, w_min=0.0, w_max=20_000.0)
    assert p.accuracy_estimate <= 1e-4 and p.nu % 2 == 0 and p.nu >= 1.2 * 512
    assert p.n_planes >= p.kernel_w.support and p.w0 <= 0.0
    d = make_plan(512, 512, pix, pix, 1e-7, w_min=0.0, w_max=20_000.0)
    assert not d.single and d.double_accum and d.fft_double and d.vis_dtype == np.complex128
    few = make_plan(512, 512, pix, pix, 1e-5, w_min=0.0, w_max=100.0, method="wproject")
    many = make_plan(512, 512, pix, pix, 1e-5, w_min=0.0, w_max=40_000.0,
                     method="wproject")
    assert few.n_taylor <= many.n_taylor and many.wp_u.support_table[-1] > 40
    assert many.grid_shape == (many.n_taylor, many.nu, many.nv)
    flat = make_plan(512, 512, pix, pix, 1e-4, do_wgridding=False)
    assert flat.grid_shape == (1, flat.nu, flat.nv) and flat.kernel_w is None
    with pytest.raises(ValueError, match="w_min"):
        make_plan(512, 512, pix, pix, 1e-4, w_min=10.0, w_max=0.0)
