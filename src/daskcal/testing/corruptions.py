"""Corruptions for simulated observations: gains, TEC screens, beam, thermal noise.

Every corruption is a *deterministic function of absolute coordinates* (time in unix
seconds, frequency in Hz, antenna and channel/time indices) whose random parameters
are drawn once from ``(seed, stream)``. Any chunk can therefore be regenerated alone,
and the values do not depend on how the observation is chunked:

* gains and screens are sums of a few sinusoids with random periods and phases;
* the beam is analytic;
* thermal noise uses a counter-based generator (Philox) keyed by ``(seed, stream)``
  with the counter set from the (time index, channel index) of each slab, so that each
  (time, channel) has its own reproducible stream of ``n_bl x n_pol`` complex samples.

Conventions: gains are ``(time, frequency, antenna, receptor)`` complex; a visibility
of baseline ``(p, q)`` and correlation ``(a, b)`` is multiplied by
``g_pa conj(g_qb)``. Direction-dependent terms are diagonal Jones matrices
``(time, antenna, direction, frequency, receptor)`` applied as ``J_p B J_q^H``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daskcal.data.geometry import C_M_S, angular_separation, elevation_azimuth

#: Random streams (second element of the seed sequence) of each corruption.
STREAM_GAINS, STREAM_SCREENS, STREAM_NOISE, STREAM_RFI, STREAM_SKY = 1, 2, 3, 4, 5

#: Ionospheric phase per TECU: ``phase = TEC_PHASE_RAD_HZ * TEC / f`` (rad, TECU, Hz).
TEC_PHASE_RAD_HZ = -8.4479745e9


def stream_rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of one random stream of a simulation."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream)]))


def slab_rng(seed: int, stream: int, time_index: int, chan_index: int) -> np.random.Generator:
    """A counter-based generator for one (time, channel) slab of a stream.

    The Philox key comes from ``(seed, stream)``; the counter's two high words hold
    ``(chan_index, time_index)``, so slabs never share random numbers.
    """
    key = np.random.SeedSequence([int(seed), int(stream)]).generate_state(2, np.uint64)
    return np.random.Generator(np.random.Philox(key=key, counter=[0, 0, int(chan_index),
                                                                  int(time_index)]))


# ----------------------------------------------------------------------------- gains


def _unit_series(rng, shape, n_terms):
    """Weights (normalised so that the sum of cosines has unit rms), periods and phases."""
    w = rng.normal(0.0, 1.0, shape + (n_terms,))
    w *= np.sqrt(2.0) / np.sqrt(np.sum(w**2, axis=-1, keepdims=True))
    return w, np.exp(rng.uniform(-0.7, 0.7, shape + (n_terms,))), rng.uniform(
        0, 2 * np.pi, shape + (n_terms,))


@dataclass(frozen=True, eq=False)
class GainModel:
    """Smooth complex antenna gains per receptor with time and frequency structure.

    ``g = exp(amplitude_rms * (0.8 x_t + 0.6 x_f)) * exp(i (phi_0 + phase_rms * y_t
    + 2 pi tau (f - f_ref)))`` where ``x_t, y_t`` (time) and ``x_f`` (frequency) are sums
    of three cosines with unit rms, periods within a factor two of ``time_scale_s`` and
    ``freq_scale_hz``, ``phi_0`` uniform and ``tau`` (delay) normal with rms
    ``delay_rms_s``. All parameters have shape ``(n_ant, 2, n_terms)`` or ``(n_ant, 2)``.
    """

    t_ref_s: float
    f_ref_hz: float
    amplitude_rms: float
    phase_rms_rad: float
    time_scale_s: float
    freq_scale_hz: float
    amp_t: tuple
    amp_f: tuple
    phase_t: tuple
    phase0: np.ndarray
    delay_s: np.ndarray

    @classmethod
    def draw(cls, n_ant: int, *, seed: int, t_ref_s: float, f_ref_hz: float,
             amplitude_rms: float = 0.05, phase_rms_rad: float = 0.5,
             time_scale_s: float = 1800.0, freq_scale_hz: float = 20e6,
             delay_rms_s: float = 2e-9, n_terms: int = 3) -> GainModel:
        """Draw the parameters of ``n_ant`` antennas from ``(seed, STREAM_GAINS)``."""
        rng = stream_rng(seed, STREAM_GAINS)
        shape = (n_ant, 2)
        return cls(t_ref_s, f_ref_hz, amplitude_rms, phase_rms_rad, time_scale_s, freq_scale_hz,
                   _unit_series(rng, shape, n_terms), _unit_series(rng, shape, n_terms),
                   _unit_series(rng, shape, n_terms), rng.uniform(-np.pi, np.pi, shape),
                   rng.normal(0.0, delay_rms_s, shape))

    @staticmethod
    def _series(x, params, scale):
        w, period, phase = params  # (n_ant, 2, K)
        arg = 2 * np.pi * x[:, None, None, None] / (scale * period[None]) + phase[None]
        return np.sum(w[None] * np.cos(arg), axis=-1)  # (n_x, n_ant, 2)

    def evaluate(self, time_s, freq_hz) -> np.ndarray:
        """Gains on a grid.

        Parameters
        ----------
        time_s : array, shape (n_time,)
            Unix seconds.
        freq_hz : array, shape (n_chan,)

        Returns
        -------
        ndarray, shape (n_time, n_chan, n_ant, 2), complex64
        """
        t = np.asarray(time_s, dtype=np.float64) - self.t_ref_s
        f = np.asarray(freq_hz, dtype=np.float64) - self.f_ref_hz
        xt = self._series(t, self.amp_t, self.time_scale_s)[:, None]
        xf = self._series(f, self.amp_f, self.freq_scale_hz)[None, :]
        yt = self._series(t, self.phase_t, self.time_scale_s)[:, None]
        log_amp = self.amplitude_rms * (0.8 * xt + 0.6 * xf)
        phase = (self.phase0[None, None] + self.phase_rms_rad * yt
                 + 2 * np.pi * self.delay_s[None, None] * f[None, :, None, None])
        return np.exp(log_amp + 1j * phase).astype(np.complex64)


def apply_gains(vis, gains, antenna1, antenna2, receptors, *, out=None) -> np.ndarray:
    """Multiply visibilities by diagonal antenna gains: ``g_pa V_pq,ab conj(g_qb)``.

    Parameters
    ----------
    vis : ndarray, shape (n_time, n_bl, n_chan, n_corr), complex
    gains : ndarray, shape (n_time, n_chan, n_ant, 2), complex
    antenna1, antenna2 : ndarray of int, shape (n_bl,)
    receptors : tuple of two int arrays, shape (n_corr,)
    out : ndarray, optional
        Where to write the result (may be ``vis`` itself); default a new array.

    Returns
    -------
    ndarray, same shape and dtype as ``vis``
    """
    ra, rb = (np.asarray(r) for r in receptors)
    if out is None:
        out = np.array(vis, copy=True)
    elif out is not vis:
        out[...] = vis
    for i in range(out.shape[0]):  # one time step at a time: small temporaries
        gp = gains[i][:, antenna1][..., ra]  # (chan, bl, corr)
        gq = gains[i][:, antenna2][..., rb]
        out[i] *= np.transpose(gp * np.conj(gq), (1, 0, 2))
    return out


# ----------------------------------------------------------------------------- screens


@dataclass(frozen=True, eq=False)
class TecScreen:
    """A frozen-flow ionospheric TEC screen: a sum of drifting plane waves.

    ``TEC(x, t) = sum_j A_j sin(k_j . (x - v (t - t_ref)) + phi_j)`` (TECU) at a point
    ``x`` (metres, east/north) of a thin layer at ``height_m``; wavelengths are
    log-uniform between ``inner_scale_m`` and ``outer_scale_m`` with a Kolmogorov-like
    amplitude spectrum ``A ~ lambda^(5/6)``, scaled to an rms of ``tec_rms_tecu``. The
    line of sight of antenna ``p`` towards direction ``(l, m, n)`` (relative to the
    pointing) pierces the layer at ``x_p + height_m (l, m) / n`` (``n`` clipped at 0.1).
    The phase of a visibility is ``TEC_PHASE_RAD_HZ * TEC / f``.
    """

    t_ref_s: float
    height_m: float
    velocity_m_s: np.ndarray
    wavevector: np.ndarray  # (n_modes, 2), rad/m
    amplitude: np.ndarray  # (n_modes,), TECU
    phase: np.ndarray  # (n_modes,)

    @classmethod
    def draw(cls, *, seed: int, t_ref_s: float, tec_rms_tecu: float = 0.1,
             outer_scale_m: float = 100e3, inner_scale_m: float = 1e3, speed_m_s: float = 50.0,
             height_m: float = 300e3, n_modes: int = 32) -> TecScreen:
        """Draw a screen from ``(seed, STREAM_SCREENS)``."""
        rng = stream_rng(seed, STREAM_SCREENS)
        lam = np.exp(rng.uniform(np.log(inner_scale_m), np.log(outer_scale_m), n_modes))
        ang = rng.uniform(0, 2 * np.pi, n_modes)
        k = (2 * np.pi / lam)[:, None] * np.stack([np.cos(ang), np.sin(ang)], axis=1)
        amp = lam ** (5.0 / 6.0) * rng.rayleigh(1.0, n_modes)
        amp *= tec_rms_tecu / np.sqrt(0.5 * np.sum(amp**2))
        drift = rng.uniform(0, 2 * np.pi)
        return cls(t_ref_s, height_m, speed_m_s * np.array([np.cos(drift), np.sin(drift)]), k, amp,
                   rng.uniform(0, 2 * np.pi, n_modes))

    def tec(self, time_s, antenna_en_m, lmn) -> np.ndarray:
        """TEC along the lines of sight.

        Parameters
        ----------
        time_s : array, shape (n_time,)
        antenna_en_m : array, shape (n_ant, 2 or 3)
            East/north positions of the antennas, metres.
        lmn : array, shape (n_dir, 3)
            Direction cosines relative to the pointing.

        Returns
        -------
        ndarray, shape (n_time, n_ant, n_dir), TECU
        """
        t = np.asarray(time_s, dtype=np.float64) - self.t_ref_s
        en = np.asarray(antenna_en_m, dtype=np.float64)[:, :2]
        lmn = np.asarray(lmn, dtype=np.float64).reshape(-1, 3)
        pierce = en[:, None, :] + self.height_m * lmn[None, :, :2] / np.clip(lmn[None, :, 2:], 0.1,
                                                                              None)
        base = pierce @ self.wavevector.T + self.phase  # (n_ant, n_dir, n_modes)
        shift = (t[:, None] * self.velocity_m_s[None]) @ self.wavevector.T  # (n_time, n_modes)
        return np.einsum("tadm,m->tad", np.sin(base[None] - shift[:, None, None]), self.amplitude)


# ----------------------------------------------------------------------------- beam


def beam_voltage(time_s, freq_hz, src_ra, src_dec, pointing_rad, diameter_m, site_itrf_m, *,
                 sidelobe_level: float = 1e-3, elevation_exponent: float = 2.0,
                 aberration: bool = True) -> np.ndarray:
    """A simple station/dish voltage beam per antenna, source and channel.

    The power beam is ``P = ((1 - s) exp(-4 ln 2 (rho / theta)^2) + s) sin(el)^e`` for
    a source at angular distance ``rho`` from the (tracked) pointing and elevation
    ``el`` > 0 (zero below the horizon), with power FWHM ``theta = 1.02 c / (f D)``,
    far-sidelobe floor ``s`` = ``sidelobe_level`` and ``e`` = ``elevation_exponent``
    (the element/projection falloff of a phased array or a dish's spillover); the
    voltage is ``sqrt(P)``, applied to both receptors.

    Parameters
    ----------
    time_s : array, shape (n_time,)
    freq_hz : array, shape (n_chan,)
    src_ra, src_dec : array, shape (n_src,)
        J2000, radians.
    pointing_rad : array, shape (2,)
        J2000 (RA, Dec) of the pointing, radians.
    diameter_m : array, shape (n_ant,)
    site_itrf_m : array, shape (3,)
        Where elevations are computed (the array centre).

    Returns
    -------
    ndarray, shape (n_time, n_ant, n_src, n_chan), float32
    """
    freq = np.asarray(freq_hz, dtype=np.float64)
    diam = np.asarray(diameter_m, dtype=np.float64)
    rho = angular_separation(pointing_rad[0], pointing_rad[1], np.asarray(src_ra),
                             np.asarray(src_dec))  # (n_src,)
    theta = 1.02 * C_M_S / (freq[None, :] * diam[:, None])  # (n_ant, n_chan)
    main = np.exp(-4 * np.log(2) * (rho[None, :, None] / theta[:, None, :]) ** 2)
    power = (1.0 - sidelobe_level) * main + sidelobe_level  # (n_ant, n_src, n_chan)
    el, _ = elevation_azimuth(time_s, src_ra, src_dec, site_itrf_m, aberration=aberration)
    horizon = np.where(el > 0, np.sin(np.clip(el, 0, None)) ** elevation_exponent, 0.0)
    return np.sqrt(power[None] * horizon[:, None, :, None]).astype(np.float32)


# ----------------------------------------------------------------------------- noise


def noise_sigma(sefd_jy, antenna1, antenna2, channel_width_hz: float,
                integration_s: float) -> np.ndarray:
    """Thermal noise per real and per imaginary part of each baseline's visibilities.

    ``sigma_pq = sqrt(SEFD_p SEFD_q) / sqrt(2 dnu dt)`` (Jy), for channel width ``dnu``
    (Hz) and integration ``dt`` (s), system efficiency 1.

    Returns
    -------
    ndarray, shape (n_bl,), float64
    """
    sefd = np.asarray(sefd_jy, dtype=np.float64)
    return np.sqrt(sefd[antenna1] * sefd[antenna2]) / np.sqrt(2.0 * channel_width_hz * integration_s)


def thermal_noise(seed: int, time_index, chan_index, sigma, n_pol: int, *,
                  out=None) -> np.ndarray:
    """Complex Gaussian noise for a block, reproducible per (time, channel) slab.

    Parameters
    ----------
    seed : int
    time_index, chan_index : array of int, shape (n_time,), (n_chan,)
        Global indices of the block's time steps and channels.
    sigma : array, shape (n_bl,)
        Standard deviation of each real and imaginary part, per baseline.
    n_pol : int
    out : ndarray, shape (n_time, n_bl, n_chan, n_pol), complex, optional
        Add the noise to this array in place instead of returning a new one.

    Returns
    -------
    ndarray, shape (n_time, n_bl, n_chan, n_pol), complex64 (or ``out``)
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    if out is None:
        out = np.zeros((len(time_index), sigma.size, len(chan_index), n_pol), dtype=np.complex64)
    scale = sigma[:, None, None]
    for i, t in enumerate(np.asarray(time_index)):
        for j, c in enumerate(np.asarray(chan_index)):
            z = slab_rng(seed, STREAM_NOISE, t, c).standard_normal((sigma.size, n_pol, 2))
            z *= scale
            out[i, :, j, :] += z[..., 0] + 1j * z[..., 1]
    return out


def direction_jones(time_s, freq_hz, *, n_ant: int, n_src: int, screen_tec=None,
                    beam=None) -> np.ndarray:
    """Combine TEC and beam truths into diagonal Jones terms.

    Parameters
    ----------
    time_s : array, shape (n_time,)
    freq_hz : array, shape (n_chan,)
    screen_tec : array, shape (n_time, n_ant, n_src), TECU, optional
    beam : array, shape (n_time, n_ant, n_src, n_chan), voltage, optional

    Returns
    -------
    ndarray, shape (n_time, n_ant, n_src, n_chan, 2), complex128
        ``beam * exp(i TEC_PHASE_RAD_HZ * TEC / f)``, the same for both receptors.
    """
    freq = np.asarray(freq_hz, dtype=np.float64)
    jones = np.ones((len(time_s), n_ant, n_src, freq.size), dtype=np.complex128)
    if screen_tec is not None:
        jones *= np.exp(1j * TEC_PHASE_RAD_HZ * screen_tec[..., None] / freq)
    if beam is not None:
        jones *= beam
    return np.repeat(jones[..., None], 2, axis=-1)
