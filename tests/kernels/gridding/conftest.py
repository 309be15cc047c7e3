"""Shared data and direct-Fourier-transform references for the gridding tests.

The references implement ducc0.wgridder's convention literally (numpy, one exponential per
pixel and sample)::

    dirty(l, m) = sum w Re[V exp(+2 pi i f/c (u l + v m - w (n - 1)))] / n
    V(u, v, w)  = w sum_pix I(l, m) / n exp(-2 pi i f/c (u l + v m - w (n - 1)))
"""

from __future__ import annotations

import numpy as np
import pytest

C = 299_792_458.0


def _uvw_case(seed: int, n_time: int, n_core: int, n_remote: int, max_baseline_m: float):
    rng = np.random.default_rng(seed)
    core = rng.uniform(-1.0, 1.0, (n_core, 2)) * 1500.0
    ang = rng.uniform(0, 2 * np.pi, n_remote)
    rad = np.geomspace(3e3, 40e3, n_remote)
    en = np.concatenate([core, np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1)])
    a1, a2 = np.triu_indices(en.shape[0], k=1)
    b = en[a2] - en[a1]
    b *= max_baseline_m / np.linalg.norm(b, axis=1).max()
    lat, dec = np.radians(52.9), np.radians(30.0)
    lx, ly, lz = -np.sin(lat) * b[:, 1], b[:, 0], np.cos(lat) * b[:, 1]
    ha = np.linspace(-1.5, 1.5, n_time)[:, None] * (np.pi / 12.0)
    u = np.sin(ha) * lx + np.cos(ha) * ly
    v = -np.sin(dec) * np.cos(ha) * lx + np.sin(dec) * np.sin(ha) * ly + np.cos(dec) * lz
    w = np.cos(dec) * np.cos(ha) * lx - np.cos(dec) * np.sin(ha) * ly + np.sin(dec) * lz
    return np.stack([u, v, w], axis=-1).reshape(-1, 3)


@pytest.fixture(scope="session")
def case():
    """A LOFAR-like snapshot set at 150 MHz: baselines to 80 km, a 2.5 degree field.

    1740 rows (435 baselines x 4 times) x 4 channels; some rows missing (NaN uvw, all
    flagged), some samples flagged, some zero weights; 256^2 pixels of 35 arcsec.
    """
    rng = np.random.default_rng(11)
    uvw = _uvw_case(3, 4, 22, 8, 80e3)
    n_row = uvw.shape[0]
    freq = np.array([146e6, 149e6, 152e6, 155e6])
    vis = rng.normal(size=(n_row, 4)) + 1j * rng.normal(size=(n_row, 4))
    weight = rng.uniform(0.5, 2.0, (n_row, 4))
    weight[rng.random((n_row, 4)) < 0.03] = 0.0
    flag = rng.random((n_row, 4)) < 0.05
    missing = rng.choice(n_row, 40, replace=False)
    uvw[missing] = np.nan
    flag[missing] = True
    npix = 256
    pix = np.radians(2.5) / npix
    return dict(uvw=uvw, freq=freq, vis=vis, weight=weight, flag=flag, npix=npix, pix=pix,
                missing=missing)


@pytest.fixture(scope="session")
def dft_dirty():
    """``f(uvw, freq, vis, weight, flag, ix, iy, npix, pix, w_term=True, divide_by_n=True)``."""

    def f(uvw, freq, vis, weight, flag, ix, iy, npix, pix, w_term=True, divide_by_n=True):
        l = (np.asarray(ix) - npix // 2) * pix
        m = (np.asarray(iy) - npix // 2) * pix
        n = np.sqrt(1.0 - l * l - m * m)
        use = ~flag & (weight != 0)
        out = np.zeros(l.size)
        for c in range(freq.size):
            rows = use[:, c]
            x = uvw[rows] * (freq[c] / C)
            wt = weight[rows, c] * vis[rows, c]
            ph = np.outer(l, x[:, 0]) + np.outer(m, x[:, 1])
            if w_term:
                ph -= np.outer(n - 1.0, x[:, 2])
            out += (np.exp(2j * np.pi * ph) @ wt).real
        return out / n if divide_by_n else out

    return f


@pytest.fixture(scope="session")
def dft_vis():
    """``f(uvw, freq, weight, flag, ix, iy, flux, npix, pix)`` -> (n_row, n_chan) complex."""

    def f(uvw, freq, weight, flag, ix, iy, flux, npix, pix):
        l = (np.asarray(ix) - npix // 2) * pix
        m = (np.asarray(iy) - npix // 2) * pix
        n = np.sqrt(1.0 - l * l - m * m)
        out = np.zeros((uvw.shape[0], freq.size), dtype=np.complex128)
        use = ~flag & (weight != 0)
        for c in range(freq.size):
            rows = use[:, c]
            x = uvw[rows] * (freq[c] / C)
            ph = np.outer(x[:, 0], l) + np.outer(x[:, 1], m) - np.outer(x[:, 2], n - 1.0)
            out[rows, c] = weight[rows, c] * (np.exp(-2j * np.pi * ph) @ (flux / n))
        return out

    return f
