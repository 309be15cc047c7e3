"""Direct Fourier transform (DFT) prediction of model visibilities.

Measurement equation
--------------------
For baseline ``(p, q)`` = ``(antenna1, antenna2)`` with ``uvw = X_p - X_q`` (metres,
J2000; see :mod:`daskcal.data.geometry`), channel frequency ``f`` and correlation
``(a, b)`` of the receptors ``a, b`` in ``{0, 1}``::

    V_pq,ab(f) = sum_s  J_ps,a(f) conj(J_qs,b(f)) B_s,ab(f) G_s(u, v, f)
                        exp(+2 pi i (u l_s + v m_s + w (n_s - 1)) f / c)

where ``B_s`` is the source brightness (coherency) matrix, ``J`` optional diagonal
per-antenna, per-direction Jones terms (``J_p B J_q^H``), and ``G_s`` the visibility
of a unit-flux Gaussian (1 for points)::

    G = exp(-pi^2 / (4 ln 2) * (maj^2 u_maj^2 + min^2 u_min^2)),
    u_maj = (u sin(pa) + v cos(pa)) f / c,   u_min = (u cos(pa) - v sin(pa)) f / c

with ``maj``, ``min`` the FWHM in radians and ``pa`` the position angle of the major
axis (north through east). Brightness matrices from Stokes parameters
(:func:`stokes_to_coherency`) follow the usual convention without a factor 1/2:
``XX = I + Q, XY = U + iV, YX = U - iV, YY = I - Q`` and
``RR = I + V, RL = Q + iU, LR = Q - iU, LL = I - V``.

Speed: the phase is computed once per (time, baseline, source); across regularly
spaced channels the phasors are advanced by complex multiplication with a stride of
:data:`_STRIDE` channels (so the recurrence vectorises and only ``_STRIDE + 1``
``sincos`` are needed per source instead of one per channel), and the Gaussian taper
``exp(-q f^2)`` by two multiplications per channel (successive ratios form a geometric
sequence); irregular channels fall back to one ``sincos`` (and ``exp``) per channel. Accumulation is in float64 real/imaginary arrays
with channels innermost, whatever the output type; the relative error of the
recurrence grows as ``n_chan / _STRIDE`` times the float64 epsilon.
"""

from __future__ import annotations

import numpy as np

from daskcal.kernels._jit import njit

#: Speed of light, m/s.
C_M_S = 299_792_458.0

#: Receptor pairs (a, b) of each correlation name.
_CORR_RECEPTORS = {
    "XX": (0, 0), "XY": (0, 1), "YX": (1, 0), "YY": (1, 1),
    "RR": (0, 0), "RL": (0, 1), "LR": (1, 0), "LL": (1, 1),
}


def correlation_receptors(polarization) -> tuple[np.ndarray, np.ndarray]:
    """Receptor indices ``(a, b)`` of each correlation name, each of shape (n_corr,).

    Raises
    ------
    ValueError
        For unknown names or a mix of linear and circular correlations.
    """
    names = [str(p) for p in polarization]
    unknown = [p for p in names if p not in _CORR_RECEPTORS]
    if unknown:
        raise ValueError(f"unknown correlation(s) {unknown}; expected XX..YY or RR..LL")
    kinds = {"linear" if p[0] in "XY" else "circular" for p in names}
    if len(kinds) > 1:
        raise ValueError(f"correlations {names} mix linear and circular feeds")
    ra = np.array([_CORR_RECEPTORS[p][0] for p in names], dtype=np.int64)
    rb = np.array([_CORR_RECEPTORS[p][1] for p in names], dtype=np.int64)
    return ra, rb


def stokes_to_coherency(stokes, polarization) -> np.ndarray:
    """Correlations of the brightness matrix from Stokes parameters.

    Parameters
    ----------
    stokes : array, shape (..., 4)
        Stokes I, Q, U, V, Jy.
    polarization : sequence of str, length n_corr
        Correlation names, all linear (``XX, XY, YX, YY``) or all circular
        (``RR, RL, LR, LL``), in any order and subset.

    Returns
    -------
    ndarray, shape (..., n_corr), complex128
    """
    s = np.asarray(stokes)
    if s.shape[-1:] != (4,):
        raise ValueError(f"stokes has shape {s.shape}, expected (..., 4)")
    correlation_receptors(polarization)
    i, q, u, v = (s[..., k].astype(np.complex128) for k in range(4))
    table = {"XX": i + q, "XY": u + 1j * v, "YX": u - 1j * v, "YY": i - q,
             "RR": i + v, "RL": q + 1j * u, "LR": q - 1j * u, "LL": i - v}
    return np.stack([table[str(p)] for p in polarization], axis=-1)


def _regular_spacing(frequency: np.ndarray) -> bool:
    """Whether channels are evenly spaced to 1e-12 of the highest frequency."""
    n = frequency.size
    if n < 3:
        return True
    step = (frequency[-1] - frequency[0]) / (n - 1)
    dev = np.abs(frequency - (frequency[0] + step * np.arange(n))).max()
    return bool(dev <= 1e-12 * np.abs(frequency).max())


def dft_predict(
    uvw,
    frequency,
    lmn,
    coherency,
    shape_params=None,
    jones=None,
    antenna1=None,
    antenna2=None,
    receptors=None,
    *,
    out_dtype=np.complex64,
) -> np.ndarray:
    """Predict visibilities of point and Gaussian components by direct Fourier transform.

    Parameters
    ----------
    uvw : ndarray, shape (n_time, n_bl, 3), float
        Baseline coordinates ``X(antenna1) - X(antenna2)``, metres.
    frequency : ndarray, shape (n_chan,), float
        Channel frequencies, Hz.
    lmn : ndarray, shape (n_src, 3), float
        Direction cosines ``(l, m, n)`` of the components.
    coherency : ndarray, shape (n_src, n_chan, n_corr), complex
        Brightness-matrix correlations of each component in each channel, Jy (see
        :func:`stokes_to_coherency`).
    shape_params : ndarray, shape (n_src, 3), optional
        ``(major FWHM, minor FWHM, position angle)`` in radians; zeros for points.
        Default: all points.
    jones : ndarray, shape (n_time, n_ant, n_src, n_chan, 2), complex, optional
        Diagonal direction-dependent Jones terms per antenna and receptor; the model is
        ``J_p B J_q^H``. Needs ``antenna1``, ``antenna2``.
    antenna1, antenna2 : ndarray of int, shape (n_bl,), optional
        Antenna indices of the baselines (into the ``jones`` antenna axis).
    receptors : tuple of two int arrays, shape (n_corr,), optional
        Receptor pair ``(a, b)`` of each correlation (see
        :func:`correlation_receptors`). Default: ``XX, XY, YX, YY`` order for
        ``n_corr == 4``, ``XX, YY`` for 2, ``XX`` for 1.
    out_dtype : numpy dtype
        ``complex64`` (default) or ``complex128``.

    Returns
    -------
    ndarray, shape (n_time, n_bl, n_chan, n_corr), ``out_dtype``
        Model visibilities, Jy.

    Raises
    ------
    ValueError
        For inconsistent shapes or dtypes.
    """
    uvw = np.asarray(uvw)
    frequency = np.asarray(frequency)
    lmn = np.asarray(lmn)
    coherency = np.asarray(coherency)
    if uvw.ndim != 3 or uvw.shape[2] != 3 or uvw.dtype.kind != "f":
        raise ValueError(f"uvw must be float (n_time, n_bl, 3), got {uvw.dtype} {uvw.shape}")
    if frequency.ndim != 1 or frequency.dtype.kind != "f":
        raise ValueError(f"frequency must be a float 1-d array, got {frequency.dtype} "
                         f"{frequency.shape}")
    if lmn.ndim != 2 or lmn.shape[1] != 3 or lmn.dtype.kind != "f":
        raise ValueError(f"lmn must be float (n_src, 3), got {lmn.dtype} {lmn.shape}")
    n_time, n_bl, _ = uvw.shape
    n_chan, n_src = frequency.size, lmn.shape[0]
    if coherency.ndim != 3 or coherency.shape[:2] != (n_src, n_chan) or coherency.dtype.kind != "c":
        raise ValueError(f"coherency must be complex (n_src={n_src}, n_chan={n_chan}, n_corr), "
                         f"got {coherency.dtype} {coherency.shape}")
    n_corr = coherency.shape[2]
    if out_dtype not in (np.complex64, np.complex128):
        out_dtype = np.dtype(out_dtype).type
        if out_dtype not in (np.complex64, np.complex128):
            raise ValueError("out_dtype must be complex64 or complex128")
    if receptors is None:
        default = {4: ([0, 0, 1, 1], [0, 1, 0, 1]), 2: ([0, 1], [0, 1]), 1: ([0], [0])}
        if n_corr not in default:
            raise ValueError(f"n_corr={n_corr}: pass receptors for this correlation layout")
        receptors = default[n_corr]
    ra = np.asarray(receptors[0], dtype=np.int64)
    rb = np.asarray(receptors[1], dtype=np.int64)
    if ra.shape != (n_corr,) or rb.shape != (n_corr,) or np.any((ra < 0) | (ra > 1)) \
            or np.any((rb < 0) | (rb > 1)):
        raise ValueError(f"receptors must be two arrays of {n_corr} indices in {{0, 1}}")
    if shape_params is None:
        shape_params = np.zeros((n_src, 3))
    shape_params = np.asarray(shape_params, dtype=np.float64)
    if shape_params.shape != (n_src, 3):
        raise ValueError(f"shape_params has shape {shape_params.shape}, expected ({n_src}, 3)")
    use_jones = jones is not None
    if use_jones:
        jones = np.asarray(jones)
        if antenna1 is None or antenna2 is None:
            raise ValueError("jones needs antenna1 and antenna2")
        if (jones.ndim != 5 or jones.shape[0] != n_time or jones.shape[2:] != (n_src, n_chan, 2)
                or jones.dtype.kind != "c"):
            raise ValueError(f"jones must be complex (n_time={n_time}, n_ant, n_src={n_src}, "
                             f"n_chan={n_chan}, 2), got {jones.dtype} {jones.shape}")
        a1 = np.asarray(antenna1, dtype=np.int64)
        a2 = np.asarray(antenna2, dtype=np.int64)
        if a1.shape != (n_bl,) or a2.shape != (n_bl,):
            raise ValueError(f"antenna1/antenna2 must have shape ({n_bl},)")
        if n_bl and (min(a1.min(), a2.min()) < 0 or max(a1.max(), a2.max()) >= jones.shape[1]):
            raise ValueError(f"antenna indices outside the {jones.shape[1]} antennas of jones")
    else:
        jones = np.ones((1, 1, 1, 1, 1), dtype=np.complex128)
        a1 = a2 = np.zeros(1, dtype=np.int64)
    out = np.zeros((n_time, n_bl, n_chan, n_corr), dtype=out_dtype)
    if out.size == 0 or n_src == 0:
        return out
    c64 = np.ascontiguousarray
    coh_t = coherency.transpose(0, 2, 1)  # (n_src, n_corr, n_chan): channels innermost
    _kernel(c64(uvw, dtype=np.float64), c64(frequency, dtype=np.float64),
            c64(lmn, dtype=np.float64), c64(coh_t.real, dtype=np.float64),
            c64(coh_t.imag, dtype=np.float64), c64(shape_params),
            c64(jones, dtype=np.complex128), c64(a1), c64(a2), ra, rb,
            use_jones, _regular_spacing(frequency), out)
    return out


#: Channel stride of the phase recurrence: phasors of channels ``c`` and ``c + _STRIDE``
#: differ by a fixed factor, so the recurrence vectorises over ``_STRIDE`` lanes.
_STRIDE = 4


@njit
def _kernel(uvw, freq, lmn, coh_re, coh_im, shape, jones, a1, a2, ra, rb, use_jones, regular,
            out):
    n_time, n_bl = uvw.shape[0], uvw.shape[1]
    n_chan, n_src, n_corr = freq.shape[0], lmn.shape[0], coh_re.shape[1]
    two_pi_over_c = 2.0 * np.pi / C_M_S
    gauss_scale = np.pi * np.pi / (4.0 * np.log(2.0)) / (C_M_S * C_M_S)
    f0 = freq[0]
    df = (freq[n_chan - 1] - freq[0]) / (n_chan - 1) if n_chan > 1 else 0.0
    n_seed = min(_STRIDE, n_chan) if regular else n_chan
    acc_re = np.zeros((n_corr, n_chan))
    acc_im = np.zeros((n_corr, n_chan))
    p_re = np.empty(n_chan)
    p_im = np.empty(n_chan)
    freq2 = freq * freq
    for t in range(n_time):
        for b in range(n_bl):
            u, v, w = uvw[t, b, 0], uvw[t, b, 1], uvw[t, b, 2]
            acc_re[:, :] = 0.0
            acc_im[:, :] = 0.0
            for s in range(n_src):
                # phase per Hz of this (time, baseline, source)
                ph = two_pi_over_c * (u * lmn[s, 0] + v * lmn[s, 1] + w * (lmn[s, 2] - 1.0))
                for c in range(n_seed):
                    x = ph * (f0 + c * df) if regular else ph * freq[c]
                    p_re[c] = np.cos(x)
                    p_im[c] = np.sin(x)
                if n_seed < n_chan:
                    x = ph * (_STRIDE * df)
                    sr, si = np.cos(x), np.sin(x)
                    for c in range(n_seed, n_chan):
                        r, i = p_re[c - _STRIDE], p_im[c - _STRIDE]
                        p_re[c] = r * sr - i * si
                        p_im[c] = r * si + i * sr
                major, minor = shape[s, 0], shape[s, 1]
                if major > 0.0 or minor > 0.0:
                    sp, cp = np.sin(shape[s, 2]), np.cos(shape[s, 2])
                    umaj = u * sp + v * cp
                    umin = u * cp - v * sp
                    q = gauss_scale * (major * major * umaj * umaj + minor * minor * umin * umin)
                    if regular and n_chan > 1:
                        # exp(-q f^2) for f = f0 + c df: ratios of successive channels form
                        # a geometric sequence, so two multiplications per channel
                        # (restarted exactly every 64 channels: the error grows as c^2 eps)
                        ratio_step = np.exp(-2.0 * q * df * df)
                        taper = ratio = 0.0
                        for c in range(n_chan):
                            if c % 64 == 0:
                                fc = f0 + c * df
                                taper = np.exp(-q * fc * fc)
                                ratio = np.exp(-q * df * (2.0 * fc + df))
                            p_re[c] *= taper
                            p_im[c] *= taper
                            taper *= ratio
                            ratio *= ratio_step
                    else:
                        for c in range(n_chan):
                            taper = np.exp(-q * freq2[c])
                            p_re[c] *= taper
                            p_im[c] *= taper
                if use_jones:
                    jp, jq = a1[b], a2[b]
                    for c in range(n_chan):
                        jp0, jp1 = jones[t, jp, s, c, 0], jones[t, jp, s, c, 1]
                        jq0 = np.conj(jones[t, jq, s, c, 0])
                        jq1 = np.conj(jones[t, jq, s, c, 1])
                        pr, pi = p_re[c], p_im[c]
                        for k in range(n_corr):
                            g = (jp0 if ra[k] == 0 else jp1) * (jq0 if rb[k] == 0 else jq1)
                            # (coherency * g) * phasor
                            cr = coh_re[s, k, c] * g.real - coh_im[s, k, c] * g.imag
                            ci = coh_re[s, k, c] * g.imag + coh_im[s, k, c] * g.real
                            acc_re[k, c] += cr * pr - ci * pi
                            acc_im[k, c] += cr * pi + ci * pr
                else:
                    for k in range(n_corr):
                        for c in range(n_chan):
                            cr, ci = coh_re[s, k, c], coh_im[s, k, c]
                            acc_re[k, c] += cr * p_re[c] - ci * p_im[c]
                            acc_im[k, c] += cr * p_im[c] + ci * p_re[c]
            for c in range(n_chan):
                for k in range(n_corr):
                    out[t, b, c, k] = complex(acc_re[k, c], acc_im[k, c])
