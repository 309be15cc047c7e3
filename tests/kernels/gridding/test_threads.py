"""The gridder on several threads: work items, and threaded results equal the serial ones.

The thresholds that keep small problems on one thread are set to zero here, so that the
small test case runs every threaded path (private grids and their sum, shared degridding
output, the screen loops split by quadrant rows).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

from daskcal.kernels import _threads as threads
from daskcal.kernels.gridding import dirty_image, make_plan, predict_vis, transforms, wstack
from daskcal.kernels.gridding.imaging import _index, _validate_vis


def _offsets(rng, n_tiles, n_planes):
    counts = rng.integers(0, 50, n_tiles * n_planes)
    counts[rng.random(counts.size) < 0.3] = 0
    counts[7] = 5000  # one dense tile (the uv centre)
    return np.concatenate([[0], np.cumsum(counts)])


@pytest.mark.parametrize(("support_w", "groups"), [(0, 1), (0, 2), (4, 2), (4, 3), (6, 5)])
def test_plane_items_cover_each_sample_once_and_balance(support_w, groups):
    rng = np.random.default_rng(1)
    n_tiles, n_planes = 40, 9 if support_w else 1
    offsets = _offsets(rng, n_tiles, n_planes)
    for plane in range(n_planes):
        got = threads.plane_items(offsets, n_tiles, n_planes, plane, support_w, groups)
        assert len(got) == groups
        items = np.concatenate(got)
        # the samples touching the plane: keys (t, p_lo) with plane - W + 1 <= p_lo <= plane
        want = np.zeros(offsets[-1], dtype=int)
        for t in range(n_tiles):
            for p_lo in range(max(plane - max(support_w, 1) + 1, 0), plane + 1):
                k = t * n_planes + p_lo
                want[offsets[k]:offsets[k + 1]] = 1
        seen = np.zeros(offsets[-1], dtype=int)
        for t, i0, i1 in items:
            p0 = max(plane - max(support_w, 1) + 1, 0)
            assert offsets[t * n_planes + p0] <= i0 < i1 <= offsets[t * n_planes + plane + 1]
            seen[i0:i1] += 1
        np.testing.assert_array_equal(seen, want)
        sizes = np.array([int((g[:, 2] - g[:, 1]).sum()) for g in got])
        if groups > 1 and want.sum():
            piece = max(1, want.sum() // (threads.ITEMS_PER_THREAD * groups))
            assert sizes.max() - want.sum() / groups <= piece + 1


def test_ranges():
    assert threads.ranges(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert threads.ranges(2, 4) == [(0, 1), (1, 2)]
    assert threads.ranges(0, 2) == [(0, 0)]


@pytest.fixture
def every_path_threaded(monkeypatch):
    monkeypatch.setattr(wstack, "PARALLEL_SAMPLES_PER_CELL", 0.0)
    monkeypatch.setattr(wstack, "PARALLEL_MIN_SAMPLES", 0)
    monkeypatch.setattr(transforms, "MIN_PIXELS_PER_THREAD", 1)


@pytest.mark.parametrize("eps", [1e-3, 1e-6])
def test_threaded_dirty_and_predict_equal_serial(case, every_path_threaded, eps):
    plan = make_plan(case["npix"], case["npix"], case["pix"], case["pix"], eps, w_min=0.0,
                     w_max=float(np.nanmax(np.abs(case["uvw"][:, 2]))) * case["freq"].max()
                     / 299_792_458.0, n_vis=case["vis"].size)
    args = (case["uvw"], case["freq"], case["vis"], case["weight"], case["flag"])
    serial = dirty_image(*args, plan=plan)
    model = np.zeros((case["npix"], case["npix"]))
    model[100, 140], model[20, 200], model[128, 128] = 1.0, -0.5, 2.0
    pred_serial = predict_vis(model, case["uvw"], case["freq"], weight=case["weight"],
                              flag=case["flag"], plan=plan)
    assert threads.count() == 1
    with scipy.fft.set_workers(2):
        assert threads.count() == 2
        threaded = dirty_image(*args, plan=plan)
        pred = predict_vis(model, case["uvw"], case["freq"], weight=case["weight"],
                           flag=case["flag"], plan=plan)
    # single-precision grids summed in another order: rounding only
    tol = 1e-5 if plan.single else 1e-9
    scale = np.abs(serial).max()
    np.testing.assert_allclose(threaded, serial, rtol=0, atol=tol * scale)
    assert np.abs(threaded - serial).max() > 0 or not plan.single  # another order really ran
    np.testing.assert_allclose(pred, pred_serial, rtol=0, atol=tol * np.abs(pred_serial).max())


def test_threaded_grids_use_private_grids_and_leave_them_zeroed(case, every_path_threaded):
    uvw, freq, vis, weight, flag = _validate_vis(case["uvw"], case["freq"], case["vis"],
                                                 case["weight"], case["flag"], need_vis=True)
    plan = make_plan(case["npix"], case["npix"], case["pix"], case["pix"], 1e-4,
                     w_min=0.0, w_max=float(np.nanmax(np.abs(uvw[:, 2]))) * freq.max()
                     / 299_792_458.0, n_vis=vis.size)
    index = _index(plan, uvw, freq, vis, flag, weight, conjugate=False)
    into_serial = np.zeros(plan.grid_shape, dtype=plan.grid_dtype)
    for _ in wstack.grid_planes(plan, index, into=into_serial):
        pass
    into = np.zeros(plan.grid_shape, dtype=plan.grid_dtype)
    with scipy.fft.set_workers(2):
        for _ in wstack.grid_planes(plan, index, into=into):
            pass
    np.testing.assert_allclose(into, into_serial, rtol=0,
                               atol=1e-5 * np.abs(into_serial).max())


@pytest.mark.parametrize("method", ["wstack", "wproject"])
def test_prepared_vis_equals_the_one_shot_calls(case, method):
    """The cached index gives the one-shot functions' images and predictions, and the
    fused residual equals dirty(vis - predict(model)), threaded or not."""
    from daskcal.kernels.gridding.prepared import PreparedVis

    w_max = float(np.nanmax(np.abs(case["uvw"][:, 2]))) * case["freq"].max() / 299_792_458.0
    plan = make_plan(case["npix"], case["npix"], case["pix"], case["pix"], 1e-5, w_min=0.0,
                     w_max=w_max, n_vis=case["vis"].size, method=method)
    model = np.zeros((case["npix"], case["npix"]))
    model[100, 140], model[20, 200], model[128, 128] = 1.0, -0.5, 2.0
    used = np.where(case["flag"] | (case["weight"] == 0), 0.0, 1.0)
    want_dirty = dirty_image(case["uvw"], case["freq"], case["vis"], case["weight"],
                             case["flag"], plan=plan)
    want_pred = predict_vis(model, case["uvw"], case["freq"], weight=used, plan=plan)
    want_res = dirty_image(case["uvw"], case["freq"], case["vis"] - want_pred, case["weight"],
                           case["flag"], plan=plan)
    for workers in (1, 2):
        with scipy.fft.set_workers(workers):
            prep = PreparedVis(plan, case["uvw"], case["freq"], case["weight"], case["flag"])
            assert prep.n_used == int(used.sum())
            got_dirty = prep.dirty(case["vis"])
            got_pred = prep.predict(model)
            got_res = prep.residual_image(case["vis"], model)
            again = prep.dirty(case["vis"])  # the cached index is reusable
        for got, want in ((got_dirty, want_dirty), (got_res, want_res), (again, want_dirty)):
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())
        np.testing.assert_allclose(got_pred, want_pred, rtol=0,
                                   atol=2e-6 * np.abs(want_pred).max())
        assert np.all(got_pred[used == 0] == 0)
    with pytest.raises(ValueError, match="vis must be complex"):
        prep.dirty(case["vis"][:10])
