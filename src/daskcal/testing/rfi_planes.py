"""Synthetic time x frequency visibility planes with injected RFI and a truth mask.

Used by the flagging tests and ``bench/flagging_kernel.py`` (numpy only; a
candidate for ``daskcal.testing`` once a stage needs whole observations).

Model of one baseline (``n_time`` x ``n_chan`` x ``n_pol``, polarisations in MS
order XX XY YX YY):

* **noise**: complex Gaussian, standard deviation ``noise_sigma`` on the real and
  on the imaginary part ("sigma" below is this number);
* **source**: a bright smooth signal on the parallel hands, amplitude
  ``source_amplitude`` (default 100 sigma) varying by +-20 % in time and by a
  spectral slope in frequency, its phase turning once per 2 000 time samples and
  once per 1 000 channels; the cross hands carry a 2 % leakage of it;
* **RFI** (the same amplitude on every polarisation, independent phases), kinds:

  - ``narrowband``: lines 1-3 channels wide lasting 30-100 % of the time,
    5-50 sigma, fringing (phase rotating in time);
  - ``broadband``: bursts 1-3 samples long over 40-100 % of the band,
    5-50 sigma, phase following a delay across the band;
  - ``impulsive``: single-sample spikes, 10-200 sigma, random phase (0.05 %);
  - ``weak_narrowband`` / ``weak_broadband``: single-channel lines lasting 50-100 %
    of the time / single-sample bursts over 50-100 % of the band, 3-5 sigma.

  One narrowband line per 200 channels, one burst per 400 samples, one weak line
  per 400 channels and one weak burst per 800 samples (at least two of each):
  about 1.5 % of the samples carry RFI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["RFI_KINDS", "SimulatedPlane", "detection_scores", "simulate_plane"]

#: Names of the injected RFI kinds, in injection order.
RFI_KINDS: tuple[str, ...] = (
    "narrowband", "broadband", "impulsive", "weak_narrowband", "weak_broadband",
)


@dataclass(frozen=True)
class SimulatedPlane:
    """A simulated baseline.

    Attributes
    ----------
    visibility : ndarray of complex64, shape (n_time, n_chan, n_pol)
    truth : ndarray of bool, shape (n_time, n_chan)
        Samples carrying RFI (of any kind) of at least 3 sigma.
    kinds : dict of str to ndarray of bool, shape (n_time, n_chan)
        Truth mask of each kind in :data:`RFI_KINDS` (kinds may overlap).
    """

    visibility: NDArray
    truth: NDArray
    kinds: dict[str, NDArray]


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def simulate_plane(
    n_time: int,
    n_chan: int,
    n_pol: int = 4,
    *,
    seed: int = 0,
    noise_sigma: float = 1.0,
    source_amplitude: float = 100.0,
    rfi: bool = True,
) -> SimulatedPlane:
    """Simulate one baseline's (time, channel, polarisation) block with RFI.

    Parameters
    ----------
    n_time, n_chan : int
        Plane size (samples, channels), each >= 8.
    n_pol : int
        Polarisations (1, 2 or 4); parallel hands are 0 and ``n_pol - 1``.
    seed : int
        Seed of the random generator.
    noise_sigma : float
        Standard deviation of the real and imaginary noise (Jy, or any unit).
    source_amplitude : float
        Mean amplitude of the smooth source in units of ``noise_sigma``.
    rfi : bool
        Inject RFI (False gives a clean plane and empty truth masks).

    Returns
    -------
    SimulatedPlane
    """
    if n_time < 8 or n_chan < 8 or n_pol not in (1, 2, 4):
        raise ValueError(f"need n_time, n_chan >= 8 and n_pol in (1, 2, 4), got "
                         f"{(n_time, n_chan, n_pol)}")
    rng = np.random.default_rng(seed)
    t = np.arange(n_time, dtype=np.float64)[:, None]
    f = np.arange(n_chan, dtype=np.float64)[None, :]
    amp = source_amplitude * (1.0 + 0.2 * np.sin(2 * np.pi * t / 3000.0 + 0.7)) * (
        1.0 - 0.2 * (f / n_chan - 0.5))
    phase = 2 * np.pi * (t / 2000.0 + f / 1000.0) + 0.3
    source = amp * np.exp(1j * phase)
    vis = np.empty((n_time, n_chan, n_pol), np.complex128)
    parallel = (0, n_pol - 1)
    for p in range(n_pol):
        gain = 1.0 if p in parallel else 0.02 * np.exp(1j * rng.uniform(0, 2 * np.pi))
        vis[:, :, p] = gain * source
    vis += rng.normal(0.0, noise_sigma, vis.shape) + 1j * rng.normal(0.0, noise_sigma, vis.shape)
    kinds = {k: np.zeros((n_time, n_chan), np.bool_) for k in RFI_KINDS}
    if rfi:
        rfi_field = np.zeros((n_time, n_chan), np.complex128)  # amplitude x phase per sample
        per_pol_phase = rng.uniform(0, 2 * np.pi, n_pol)

        def narrow(n_lines, width, duration, amplitude, kind):
            for _ in range(n_lines):
                w = int(rng.integers(width[0], width[1] + 1))
                c0 = int(rng.integers(0, n_chan - w + 1))
                length = max(1, int(rng.uniform(*duration) * n_time))
                t0 = int(rng.integers(0, n_time - length + 1))
                a = amplitude()
                rate = rng.uniform(-0.02, 0.02)
                ph = 2 * np.pi * rate * t[t0:t0 + length] + rng.uniform(0, 2 * np.pi)
                rfi_field[t0:t0 + length, c0:c0 + w] += a * np.exp(1j * ph)
                kinds[kind][t0:t0 + length, c0:c0 + w] = True

        def broad(n_bursts, duration, extent, amplitude, kind):
            for _ in range(n_bursts):
                d = int(rng.integers(duration[0], duration[1] + 1))
                t0 = int(rng.integers(0, n_time - d + 1))
                span = max(1, int(rng.uniform(*extent) * n_chan))
                c0 = int(rng.integers(0, n_chan - span + 1))
                delay = rng.uniform(-0.05, 0.05)
                ph = 2 * np.pi * delay * f[:, c0:c0 + span] + rng.uniform(0, 2 * np.pi)
                rfi_field[t0:t0 + d, c0:c0 + span] += amplitude() * np.exp(1j * ph)
                kinds[kind][t0:t0 + d, c0:c0 + span] = True

        narrow(max(2, n_chan // 200), (1, 3), (0.3, 1.0),
               lambda: _log_uniform(rng, 5, 50), "narrowband")
        broad(max(2, n_time // 400), (1, 3), (0.4, 1.0),
              lambda: _log_uniform(rng, 5, 50), "broadband")
        n_spikes = max(4, n_time * n_chan // 2000)
        ts = rng.integers(0, n_time, n_spikes)
        cs = rng.integers(0, n_chan, n_spikes)
        amps = np.exp(rng.uniform(np.log(10), np.log(200), n_spikes))
        rfi_field[ts, cs] += amps * np.exp(1j * rng.uniform(0, 2 * np.pi, n_spikes))
        kinds["impulsive"][ts, cs] = True
        narrow(max(2, n_chan // 400), (1, 1), (0.5, 1.0),
               lambda: rng.uniform(3, 5), "weak_narrowband")
        broad(max(2, n_time // 800), (1, 1), (0.5, 1.0),
              lambda: rng.uniform(3, 5), "weak_broadband")
        for p in range(n_pol):
            vis[:, :, p] += noise_sigma * rfi_field * np.exp(1j * per_pol_phase[p])
    truth = np.zeros((n_time, n_chan), np.bool_)
    for mask in kinds.values():
        truth |= mask
    return SimulatedPlane(vis.astype(np.complex64), truth, kinds)


def detection_scores(flags: NDArray, sim: SimulatedPlane) -> dict[str, float]:
    """Recall per RFI kind, overall recall and false-positive rate of ``flags``.

    Parameters
    ----------
    flags : ndarray of bool, shape (n_time, n_chan) or (n_time, n_chan, n_pol)
        Detections (ORed over polarisations if 3-D).
    sim : SimulatedPlane

    Returns
    -------
    dict
        ``recall_<kind>`` for each kind present, ``recall`` over all RFI samples,
        ``fpr`` the flagged fraction of RFI-free samples, ``flagged`` the flagged
        fraction of all samples.
    """
    flags = np.asarray(flags)
    if flags.ndim == 3:
        flags = flags.any(axis=-1)
    scores: dict[str, float] = {}
    for kind, mask in sim.kinds.items():
        if mask.any():
            scores[f"recall_{kind}"] = float(flags[mask].mean())
    if sim.truth.any():
        scores["recall"] = float(flags[sim.truth].mean())
    scores["fpr"] = float(flags[~sim.truth].mean())
    scores["flagged"] = float(flags.mean())
    return scores
