"""Dirty images and predicted visibilities against a direct Fourier transform.

A 2.5 degree field at 150 MHz with baselines to 80 km: the w term reaches ~100 radians at
the field edge, so a gridder without it is wrong by O(1) (shown below), while both methods
meet the requested accuracy per pixel and per visibility.
"""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.kernels.gridding import (
    dirty_image,
    finish_dirty,
    grid_partial,
    make_plan,
    predict_vis,
    w_range,
)

METHODS = ("wstack", "wproject")


def _plan(case, eps, method, **kw):
    lo, hi = w_range(case["uvw"], case["freq"], case["flag"], case["weight"])
    return make_plan(case["npix"], case["npix"], case["pix"], case["pix"], eps, w_min=lo,
                     w_max=hi, method=method, **kw)


@pytest.fixture(scope="module")
def pixels(case):
    rng = np.random.default_rng(5)
    n = case["npix"]
    ix = np.r_[rng.integers(0, n, 60), 0, 0, n - 1, n - 1, n // 2]
    iy = np.r_[rng.integers(0, n, 60), 0, n - 1, 0, n - 1, n // 2]
    return ix, iy


@pytest.fixture(scope="module")
def ref_dirty(case, pixels, dft_dirty):
    c = case
    return dft_dirty(c["uvw"], c["freq"], c["vis"], c["weight"], c["flag"], *pixels,
                     c["npix"], c["pix"])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eps", [1e-3, 1e-5])
def test_dirty_image_matches_dft(case, pixels, ref_dirty, method, eps):
    c = case
    plan = _plan(c, eps, method)
    assert plan.accuracy_estimate <= eps
    dirty = dirty_image(c["uvw"], c["freq"], c["vis"], c["weight"], c["flag"], plan=plan)
    assert dirty.shape == (c["npix"], c["npix"]) and dirty.dtype == np.float64
    err = np.abs(dirty[pixels] - ref_dirty).max() / np.abs(ref_dirty).max()
    assert err <= eps, err
    assert err <= plan.accuracy_estimate


def test_without_w_term_the_field_is_wrong(case, pixels, ref_dirty):
    """The w term matters here: ignoring it misses the DFT by far more than 1e-3."""
    c = case
    flat = dirty_image(c["uvw"], c["freq"], c["vis"], c["weight"], c["flag"], c["npix"],
                       c["npix"], c["pix"], c["pix"], 1e-5, do_wgridding=False)
    err = np.abs(flat[pixels] - ref_dirty).max() / np.abs(ref_dirty).max()
    assert err > 0.1


def test_no_w_and_no_n_division_match_their_dft(case, pixels, dft_dirty):
    c = case
    for kw in (dict(do_wgridding=False), dict(divide_by_n=False)):
        ref = dft_dirty(c["uvw"], c["freq"], c["vis"], c["weight"], c["flag"], *pixels,
                        c["npix"], c["pix"], w_term=kw.get("do_wgridding", True),
                        divide_by_n=kw.get("divide_by_n", True))
        got = dirty_image(c["uvw"], c["freq"], c["vis"], c["weight"], c["flag"], c["npix"],
                          c["npix"], c["pix"], c["pix"], 1e-5, **kw)
        assert np.abs(got[pixels] - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.fixture(scope="module")
def model(case):
    rng = np.random.default_rng(8)
    n = case["npix"]
    ix = np.r_[rng.integers(0, n, 12), 0, n - 1, n // 2]
    iy = np.r_[rng.integers(0, n, 12), n - 1, 3, n // 2 + 1]
    flux = rng.uniform(0.5, 2.0, ix.size)
    image = np.zeros((n, n))
    image[ix, iy] = flux
    return image, ix, iy, flux


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eps", [1e-3, 1e-5])
def test_predict_matches_dft_per_visibility(case, model, dft_vis, method, eps):
    c = case
    image, ix, iy, flux = model
    ref = dft_vis(c["uvw"], c["freq"], c["weight"], c["flag"], ix, iy, flux, c["npix"],
                  c["pix"])
    plan = _plan(c, eps, method)
    vis = predict_vis(image, c["uvw"], c["freq"], weight=c["weight"], flag=c["flag"],
                      plan=plan)
    assert vis.shape == ref.shape
    assert vis.dtype == (np.complex64 if eps >= 1e-5 else np.complex128)
    used = ~c["flag"] & (c["weight"] != 0)
    assert np.all(vis[~used] == 0)
    rms = np.sqrt(np.mean(np.abs(ref[used]) ** 2))
    worst = np.abs(vis - ref)[used].max() / rms
    assert worst <= eps, worst


@pytest.mark.parametrize("method", METHODS)
def test_adjoint_identity(case, method):
    """<A v, x> = <v, A^H x> for the real dirty image A v and model x."""
    c = case
    rng = np.random.default_rng(2)
    plan = _plan(c, 1e-5, method, double_accum=True)
    x = rng.normal(size=(c["npix"], c["npix"]))
    dirty = dirty_image(c["uvw"], c["freq"], c["vis"], c["weight"], c["flag"], plan=plan)
    pred = predict_vis(x, c["uvw"], c["freq"], weight=c["weight"], flag=c["flag"], plan=plan)
    lhs = np.sum(dirty * x)
    rhs = np.real(np.sum(c["vis"] * np.conj(pred.astype(np.complex128))))
    assert abs(lhs - rhs) <= 1e-6 * abs(lhs)


@pytest.mark.parametrize("method", METHODS)
def test_partial_grids_sum_to_the_image(case, method):
    c = case
    plan = _plan(c, 1e-4, method, double_accum=True)
    full = dirty_image(c["uvw"], c["freq"], c["vis"], c["weight"], c["flag"], plan=plan)
    half = c["uvw"].shape[0] // 2
    parts = [grid_partial(c["uvw"][s], c["freq"], c["vis"][s], c["weight"][s], c["flag"][s],
                          plan=plan) for s in (slice(0, half), slice(half, None))]
    assert parts[0].shape == plan.grid_shape and parts[0].dtype == plan.grid_dtype
    total = parts[0] + parts[1]
    keep = total.copy()
    out = finish_dirty(total, plan=plan)
    np.testing.assert_array_equal(total, keep)  # the input is not modified
    # equal up to the rounding of the complex64 FFT grids
    np.testing.assert_allclose(out, full, rtol=0, atol=1e-6 * np.abs(full).max())


def test_flagged_rows_and_zero_weights_are_skipped(case):
    c = case
    keep = np.setdiff1d(np.arange(c["uvw"].shape[0]), c["missing"])
    plan = _plan(c, 1e-4, "wstack", double_accum=True)
    a = dirty_image(c["uvw"], c["freq"], c["vis"], c["weight"], c["flag"], plan=plan)
    # flagged samples hold NaN visibilities and zero-weight samples hold junk: no effect
    vis = c["vis"].copy()
    vis[c["flag"]] = np.nan
    vis[c["weight"] == 0] = 1e30
    b = dirty_image(c["uvw"], c["freq"], vis, c["weight"], c["flag"], plan=plan)
    d = dirty_image(c["uvw"][keep], c["freq"], c["vis"][keep], c["weight"][keep],
                    c["flag"][keep], plan=plan)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * np.abs(a).max())
    np.testing.assert_allclose(d, a, rtol=0, atol=1e-9 * np.abs(a).max())
    # an unflagged sample with NaN uvw is an error, not a silent NaN image
    bad = c["flag"].copy()
    bad[c["missing"][0], 1] = False
    with pytest.raises(ValueError, match="non-finite uvw"):
        dirty_image(c["uvw"], c["freq"], c["vis"], c["weight"], bad, plan=plan)


def test_negative_w_is_mirrored_exactly(case):
    """A sample and its Hermitian mirror (-uvw, conj V) give the same dirty image."""
    c = case
    keep = np.setdiff1d(np.arange(c["uvw"].shape[0]), c["missing"])
    uvw, vis = c["uvw"][keep], c["vis"][keep]
    a = dirty_image(uvw, c["freq"], vis, npix_x=64, npix_y=64, pixsize_x_rad=4 * c["pix"],
                    pixsize_y_rad=4 * c["pix"], epsilon=1e-6)
    b = dirty_image(-uvw, c["freq"], vis.conj(), npix_x=64, npix_y=64,
                    pixsize_x_rad=4 * c["pix"], pixsize_y_rad=4 * c["pix"], epsilon=1e-6)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.abs(a).max())


def test_bad_arguments(case):
    c = case
    args = (c["uvw"], c["freq"], c["vis"])
    geom = dict(npix_x=64, npix_y=64, pixsize_x_rad=1e-4, pixsize_y_rad=1e-4, epsilon=1e-4)
    with pytest.raises(ValueError, match="uvw_m"):
        dirty_image(c["uvw"][:, :2], c["freq"], c["vis"], **geom)
    with pytest.raises(ValueError, match="vis must be complex"):
        dirty_image(c["uvw"], c["freq"], c["vis"].real, **geom)
    with pytest.raises(ValueError, match="weight"):
        dirty_image(*args, weight=c["weight"][:, :2], **geom)
    with pytest.raises(ValueError, match="flag"):
        dirty_image(*args, flag=c["flag"].astype(int), **geom)
    with pytest.raises(ValueError, match="npix_x"):
        dirty_image(*args, **{**geom, "npix_x": 63})
    with pytest.raises(ValueError, match="epsilon"):
        dirty_image(*args, **{**geom, "epsilon": 0.5})
    with pytest.raises(ValueError, match="method"):
        dirty_image(*args, method="facets", **geom)
    with pytest.raises(ValueError, match="horizon"):
        dirty_image(*args, **{**geom, "pixsize_x_rad": 0.05})
    with pytest.raises(ValueError, match="image"):
        predict_vis(np.zeros((64, 64), complex), c["uvw"], c["freq"], 1e-4, 1e-4, 1e-4)
    plan = make_plan(64, 64, 2e-3, 2e-3, 1e-4, w_min=0.0, w_max=10.0)
    with pytest.raises(ValueError, match="planned range"):
        dirty_image(*args, weight=c["weight"], flag=c["flag"], plan=plan)
