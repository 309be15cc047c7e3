"""Tests of the phase-shift kernel against direct DFT prediction at the new centre."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.kernels.dft import dft_predict, stokes_to_coherency
from daskcal.kernels.phase_shift import phase_shift, shift_geometry

POLS = ["XX", "XY", "YX", "YY"]


def _radec(l, m, ra0, dec0):
    """(RA, Dec) of direction cosines (numpy reference, independent of geometry.py)."""
    n = np.sqrt(1 - l * l - m * m)
    sa, ca, sd, cd = np.sin(ra0), np.cos(ra0), np.sin(dec0), np.cos(dec0)
    axes = np.array([[-sa, ca, 0.0], [-sd * ca, -sd * sa, cd], [cd * ca, cd * sa, sd]])
    vec = np.array([l, m, n]) @ axes
    return np.arctan2(vec[1], vec[0]) % (2 * np.pi), np.arcsin(vec[2])


def _lmn(ra, dec, ra0, dec0):
    from daskcal.data.geometry import lmn_of

    return lmn_of(np.atleast_1d(ra), np.atleast_1d(dec), ra0, dec0)


@pytest.mark.parametrize("offset", [(0.3, -0.2), (-0.6, 0.5)])
def test_point_source_matches_prediction_at_new_centre(offset):
    rng = np.random.default_rng(3)
    old = np.array([1.2, 0.8])
    new = np.array(_radec(*offset, *old))
    uvw = rng.normal(0, 2000, (3, 20, 3))
    freq = 120e6 + 0.2e6 * np.arange(6)
    # a source a little away from the new centre
    src = np.array(_radec(0.01, -0.02, *new))
    coh = stokes_to_coherency(np.array([[[5.0, 1.0, 0.5, 0.2]] * freq.size]), POLS)
    vis_old = dft_predict(uvw, freq, _lmn(*src, *old), coh, out_dtype=np.complex128)
    shifted, uvw_new = phase_shift(vis_old, uvw, freq, old, new)
    direct = dft_predict(uvw_new, freq, _lmn(*src, *new), coh, out_dtype=np.complex128)
    np.testing.assert_allclose(shifted, direct, atol=1e-9 * np.abs(direct).max())
    # lengths are kept and w points at the new centre
    np.testing.assert_allclose(np.linalg.norm(uvw_new, axis=-1), np.linalg.norm(uvw, axis=-1))
    lmn, _ = shift_geometry(old, new)
    np.testing.assert_allclose(uvw_new[..., 2], uvw @ lmn, rtol=1e-12, atol=1e-9)


def test_round_trip_and_single_precision():
    rng = np.random.default_rng(4)
    old, new = np.array([0.3, 1.1]), np.array([0.9, 0.7])
    vis = (rng.normal(size=(2, 5, 4, 2)) + 1j * rng.normal(size=(2, 5, 4, 2))).astype(np.complex64)
    uvw = rng.normal(0, 500, (2, 5, 3))
    freq = np.linspace(110e6, 130e6, 4)
    v1, u1 = phase_shift(vis, uvw, freq, old, new)
    assert v1.dtype == np.complex64
    v2, u2 = phase_shift(v1, u1, freq, new, old)
    np.testing.assert_allclose(v2, vis, atol=1e-5)
    np.testing.assert_allclose(u2, uvw, atol=1e-8)


def test_validation():
    vis = np.zeros((1, 2, 3, 4), np.complex64)
    uvw = np.zeros((1, 2, 3))
    freq = np.ones(3) * 1e8
    with pytest.raises(ValueError, match="uvw"):
        phase_shift(vis, uvw[:, :1], freq, (0, 0), (0.1, 0))
    with pytest.raises(ValueError, match="frequency"):
        phase_shift(vis, uvw, freq[:2], (0, 0), (0.1, 0))
    with pytest.raises(ValueError, match="new_centre"):
        phase_shift(vis, uvw, freq, (0, 0), (0.1, 3.0))
    with pytest.raises(ValueError, match="vis"):
        phase_shift(vis.real, uvw, freq, (0, 0), (0.1, 0))
