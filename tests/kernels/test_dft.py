"""The DFT predict kernel against a slow, obviously correct numpy DFT."""

from __future__ import annotations

import numpy as np
import pytest

from daskcal.kernels.dft import (
    C_M_S,
    correlation_receptors,
    dft_predict,
    stokes_to_coherency,
)

LINEAR = ["XX", "XY", "YX", "YY"]
CIRCULAR = ["RR", "RL", "LR", "LL"]


def brightness_matrix(stokes, feed):
    """2x2 brightness matrices (..., 2, 2) from Stokes, written out by hand."""
    i, q, u, v = (stokes[..., k].astype(complex) for k in range(4))
    if feed == "linear":
        rows = [[i + q, u + 1j * v], [u - 1j * v, i - q]]
    else:
        rows = [[i + v, q + 1j * u], [q - 1j * u, i - v]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def reference_dft(uvw, freq, lmn, stokes_chan, feed, shape=None, jones=None, a1=None, a2=None):
    """Sum over sources of J_p B J_q^H G exp(-2 pi i (ul + vm + w(n-1)) f / c), with numpy."""
    n_time, n_bl, _ = uvw.shape
    out = np.zeros((n_time, n_bl, freq.size, 2, 2), dtype=complex)
    lam_inv = freq / C_M_S  # (n_chan,)
    u, v, w = (uvw[..., k, None] * lam_inv for k in range(3))  # (t, b, f), wavelengths
    for s in range(lmn.shape[0]):
        l, m, n = lmn[s]
        k = np.exp(2j * np.pi * (u * l + v * m + w * (n - 1)))
        if shape is not None and shape[s, 0] > 0:
            maj, mnr, pa = shape[s]
            umaj = u * np.sin(pa) + v * np.cos(pa)
            umin = u * np.cos(pa) - v * np.sin(pa)
            k = k * np.exp(-np.pi**2 / (4 * np.log(2)) * (maj**2 * umaj**2 + mnr**2 * umin**2))
        b = brightness_matrix(stokes_chan[s], feed)  # (f, 2, 2)
        term = k[..., None, None] * b[None, None]
        if jones is not None:
            jp = jones[:, a1, s]  # (t, b, f, 2) diagonal
            jq = jones[:, a2, s]
            term = jp[..., :, None] * term * np.conj(jq[..., None, :])
        out += term
    return out.reshape(n_time, n_bl, freq.size, 4)


@pytest.fixture
def problem():
    rng = np.random.default_rng(42)
    n_time, n_bl, n_chan, n_src, n_ant = 3, 12, 9, 5, 6
    uvw = rng.normal(0, 800.0, (n_time, n_bl, 3))
    freq = np.linspace(120e6, 168e6, n_chan)
    lm = rng.uniform(-0.1, 0.1, (n_src, 2))
    lmn = np.concatenate([lm, np.sqrt(1 - (lm**2).sum(1, keepdims=True))], axis=1)
    stokes = rng.normal(0, 1, (n_src, 4)) + np.array([3.0, 0, 0, 0])
    si = rng.normal(-0.7, 0.3, n_src)
    stokes_chan = stokes[:, None, :] * ((freq / 150e6)[None, :, None] ** si[:, None, None])
    shape = np.zeros((n_src, 3))
    shape[::2] = np.array([2e-3, 7e-4, 0.6])  # Gaussians: 7 x 2.4 arcmin, PA 34 deg
    a1 = rng.integers(0, n_ant, n_bl)
    a2 = rng.integers(0, n_ant, n_bl)
    jones = (rng.normal(1, 0.3, (n_time, n_ant, n_src, n_chan, 2))
             + 1j * rng.normal(0, 0.3, (n_time, n_ant, n_src, n_chan, 2)))
    return dict(uvw=uvw, freq=freq, lmn=lmn, stokes_chan=stokes_chan, shape=shape, a1=a1, a2=a2,
                jones=jones)


@pytest.mark.parametrize("feed,pols", [("linear", LINEAR), ("circular", CIRCULAR)])
@pytest.mark.parametrize("with_shape,with_jones", [(False, False), (True, False), (True, True)])
def test_matches_reference_dft(problem, feed, pols, with_shape, with_jones):
    p = problem
    coh = stokes_to_coherency(p["stokes_chan"], pols)
    kw = {}
    if with_shape:
        kw["shape_params"] = p["shape"]
    if with_jones:
        kw.update(jones=p["jones"], antenna1=p["a1"], antenna2=p["a2"])
    ref = reference_dft(p["uvw"], p["freq"], p["lmn"], p["stokes_chan"], feed,
                        p["shape"] if with_shape else None,
                        p["jones"] if with_jones else None, p["a1"], p["a2"])
    got64 = dft_predict(p["uvw"], p["freq"], p["lmn"], coh, out_dtype=np.complex128, **kw)
    got32 = dft_predict(p["uvw"], p["freq"], p["lmn"], coh, **kw)
    scale = np.abs(ref).max()
    assert got32.dtype == np.complex64 and got64.dtype == np.complex128
    np.testing.assert_allclose(got64, ref, rtol=0, atol=1e-11 * scale)
    np.testing.assert_allclose(got32, ref, rtol=0, atol=1e-6 * scale)


def test_irregular_channels_and_many_channels(problem):
    p = problem
    freq = np.sort(np.random.default_rng(3).uniform(110e6, 190e6, 7))
    stokes = p["stokes_chan"][:, :1].repeat(7, axis=1)
    coh = stokes_to_coherency(stokes, LINEAR)
    ref = reference_dft(p["uvw"], freq, p["lmn"], stokes, "linear", p["shape"])
    got = dft_predict(p["uvw"], freq, p["lmn"], coh, p["shape"], out_dtype=np.complex128)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11 * np.abs(ref).max())
    # 4096 regular channels over long (1000 km) baselines: the phase recurrence stays exact
    freq = np.linspace(110e6, 190e6, 4096)
    uvw = p["uvw"][:1, :2] * 1000
    stokes = np.ones((2, freq.size, 4)) * [1.0, 0, 0, 0]
    got = dft_predict(uvw, freq, p["lmn"][:2], stokes_to_coherency(stokes, LINEAR),
                      out_dtype=np.complex128)
    ref = reference_dft(uvw, freq, p["lmn"][:2], stokes, "linear")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * np.abs(ref).max())
    # ... and so does the Gaussian taper's (on baselines where it goes from 1 to ~0)
    uvw = p["uvw"][:1, :4] / 4
    got = dft_predict(uvw, freq, p["lmn"][:2], stokes_to_coherency(stokes, LINEAR),
                      p["shape"][:2], out_dtype=np.complex128)
    ref = reference_dft(uvw, freq, p["lmn"][:2], stokes, "linear", p["shape"][:2])
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_gaussian_matches_pixelised_image():
    """The FWHM/PA convention, from first principles: DFT of a sampled Gaussian image."""
    maj, mnr, pa = np.radians(3 / 60), np.radians(1 / 60), np.radians(30.0)
    step = maj / 24
    x = np.arange(-80, 81) * step
    ll, mm = np.meshgrid(x, x, indexing="ij")
    xmaj = ll * np.sin(pa) + mm * np.cos(pa)  # along the major axis (PA from north to east)
    xmin = ll * np.cos(pa) - mm * np.sin(pa)
    img = np.exp(-4 * np.log(2) * ((xmaj / maj) ** 2 + (xmin / mnr) ** 2))
    img /= img.sum()  # 1 Jy in total
    freq = np.array([150e6])
    rng = np.random.default_rng(0)
    uvw = np.zeros((1, 16, 3))
    uvw[0, :, :2] = rng.normal(0, 1500.0, (16, 2))  # to ~2000 wavelengths
    lmn_pix = np.stack([ll.ravel(), mm.ravel(), np.sqrt(1 - ll.ravel() ** 2 - mm.ravel() ** 2)], 1)
    u, v = uvw[0, :, 0] * freq[0] / C_M_S, uvw[0, :, 1] * freq[0] / C_M_S
    pixel_sum = (img.ravel()[None] * np.exp(2j * np.pi * (u[:, None] * lmn_pix[None, :, 0]
                                                           + v[:, None] * lmn_pix[None, :, 1]))
                 ).sum(axis=1)
    coh = np.ones((1, 1, 1), dtype=complex)
    got = dft_predict(uvw, freq, np.array([[0.0, 0.0, 1.0]]), coh, np.array([[maj, mnr, pa]]),
                      out_dtype=np.complex128)[0, :, 0, 0]
    assert np.abs(pixel_sum).min() < 0.2  # the test reaches well into the taper
    np.testing.assert_allclose(got, pixel_sum, atol=2e-4)


def test_point_source_at_phase_centre_and_sign():
    freq = np.array([100e6, 200e6])
    uvw = np.array([[[70.0, 0.0, 0.0]]])
    coh = np.ones((1, 2, 1), dtype=complex)
    at_centre = dft_predict(uvw, freq, np.array([[0.0, 0.0, 1.0]]), coh)
    assert np.allclose(at_centre, 1.0)
    l = 0.01
    east = dft_predict(uvw, freq, np.array([[l, 0.0, np.sqrt(1 - l * l)]]), coh,
                       out_dtype=np.complex128)
    assert np.allclose(east[0, 0, :, 0], np.exp(2j * np.pi * 70.0 * l * freq / C_M_S))


def test_stokes_to_coherency_inverts():
    rng = np.random.default_rng(1)
    i, q, u, v = rng.normal(size=(4, 10))
    st = np.stack([i, q, u, v], axis=-1)
    xx, xy, yx, yy = np.moveaxis(stokes_to_coherency(st, LINEAR), -1, 0)
    assert np.allclose([(xx + yy) / 2, (xx - yy) / 2, (xy + yx) / 2, (xy - yx) / 2j], [i, q, u, v])
    rr, rl, lr, ll = np.moveaxis(stokes_to_coherency(st, CIRCULAR), -1, 0)
    assert np.allclose([(rr + ll) / 2, (rl + lr) / 2, (rl - lr) / 2j, (rr - ll) / 2], [i, q, u, v])
    assert np.allclose(stokes_to_coherency(st, ["YY", "XX"]), np.stack([yy, xx], -1))
    assert [list(x) for x in correlation_receptors(["RR", "LL"])] == [[0, 1], [0, 1]]


def test_subset_of_correlations_with_jones(problem):
    p = problem
    full = dft_predict(p["uvw"], p["freq"], p["lmn"],
                       stokes_to_coherency(p["stokes_chan"], LINEAR), jones=p["jones"],
                       antenna1=p["a1"], antenna2=p["a2"], out_dtype=np.complex128)
    pols = ["YY", "XY"]
    sub = dft_predict(p["uvw"], p["freq"], p["lmn"], stokes_to_coherency(p["stokes_chan"], pols),
                      jones=p["jones"], antenna1=p["a1"], antenna2=p["a2"],
                      receptors=correlation_receptors(pols), out_dtype=np.complex128)
    np.testing.assert_allclose(sub, full[..., [3, 1]], rtol=1e-12, atol=1e-12)


def test_empty_inputs():
    coh = np.zeros((0, 4, 4), dtype=complex)
    out = dft_predict(np.zeros((2, 3, 3)), np.linspace(1e8, 2e8, 4), np.zeros((0, 3)), coh)
    assert out.shape == (2, 3, 4, 4) and not out.any()


@pytest.mark.parametrize("bad,match", [
    (dict(uvw=np.zeros((2, 3))), "uvw"),
    (dict(frequency=np.zeros((2, 2))), "frequency"),
    (dict(lmn=np.zeros((2, 2))), "lmn"),
    (dict(coherency=np.zeros((1, 4, 4))), "coherency"),
    (dict(shape_params=np.zeros((2, 3))), "shape_params"),
    (dict(jones=np.ones((2, 3, 1, 4, 2), complex)), "antenna1"),
    (dict(jones=np.ones((2, 3, 1, 4, 2), complex), antenna1=[0, 1, 5], antenna2=[0, 1, 2]),
     "antenna indices"),
    (dict(jones=np.ones((1, 3, 1, 4, 2), complex), antenna1=[0, 1, 2], antenna2=[0, 1, 2]),
     "jones"),
    (dict(out_dtype=np.float32), "out_dtype"),
    (dict(coherency=np.zeros((1, 4, 3), complex)), "receptors"),
])
def test_invalid_inputs_raise_value_error(bad, match):
    args = dict(uvw=np.zeros((2, 3, 3)), frequency=np.linspace(1e8, 2e8, 4),
                lmn=np.array([[0.0, 0.0, 1.0]]), coherency=np.ones((1, 4, 4), complex))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        dft_predict(**args)
