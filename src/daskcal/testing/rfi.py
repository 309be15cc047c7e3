"""Synthetic radio-frequency interference with an exact truth mask.

Three kinds, each with a strength in units of the thermal-noise sigma of the sample's
baseline (:func:`daskcal.testing.corruptions.noise_sigma`):

* **lines**: narrow-band transmitters, persistent over the whole observation, on every
  baseline and correlation, ``line_width_chan`` channels wide;
* **bursts**: broadband events lasting ``burst_steps`` integrations over a contiguous
  fraction of the band, on every baseline and correlation;
* **spikes**: impulsive single samples (one time, baseline and channel; all
  correlations), with probability ``spike_probability`` per sample.

Where several overlap their contributions add. Each affected sample gets amplitude
``strength * sigma`` and a random phase; the phases of a (time, channel) slab come
from a counter-based stream keyed by ``(seed, STREAM_RFI)``
(:func:`daskcal.testing.corruptions.slab_rng`), and the event lists are drawn once for
the whole observation, so any block is regenerated identically whatever the chunking.
The truth mask is ``rfi != 0``: exactly the samples where RFI was added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daskcal.testing.corruptions import STREAM_RFI, slab_rng, stream_rng


@dataclass(frozen=True, eq=False)
class RFIPlan:
    """The RFI events of one observation (global indices).

    Attributes
    ----------
    lines : ndarray, shape (n_lines, 3)
        ``(first channel, stop channel, strength)``.
    bursts : ndarray, shape (n_bursts, 5)
        ``(first time, stop time, first channel, stop channel, strength)``.
    spikes : ndarray, shape (n_spikes, 4)
        ``(time, baseline, channel, strength)``.
    """

    seed: int
    lines: np.ndarray
    bursts: np.ndarray
    spikes: np.ndarray

    @classmethod
    def draw(cls, *, seed: int, n_time: int, n_bl: int, n_chan: int, n_lines: int = 2,
             line_width_chan: int = 1, line_strength: float = 20.0, n_bursts: int = 1,
             burst_steps: int = 2, burst_band_fraction: float = 1.0,
             burst_strength: float = 5.0, spike_probability: float = 1e-4,
             spike_strength: float = 50.0) -> RFIPlan:
        """Draw the events of an observation of the given shape from ``(seed, STREAM_RFI)``."""
        rng = stream_rng(seed, STREAM_RFI)
        width = max(1, min(int(line_width_chan), n_chan))
        starts = rng.integers(0, n_chan - width + 1, n_lines) if n_lines else np.zeros(0, int)
        lines = np.stack([starts, starts + width, np.full(n_lines, float(line_strength))],
                         axis=1).astype(np.float64).reshape(n_lines, 3)
        steps = max(1, min(int(burst_steps), n_time))
        band = max(1, min(n_chan, int(round(burst_band_fraction * n_chan))))
        t0 = rng.integers(0, n_time - steps + 1, n_bursts) if n_bursts else np.zeros(0, int)
        c0 = rng.integers(0, n_chan - band + 1, n_bursts) if n_bursts else np.zeros(0, int)
        bursts = np.stack([t0, t0 + steps, c0, c0 + band, np.full(n_bursts, float(burst_strength))],
                          axis=1).astype(np.float64).reshape(n_bursts, 5)
        n_samples = n_time * n_bl * n_chan
        n_spikes = rng.binomial(n_samples, spike_probability) if spike_probability > 0 else 0
        flat = np.unique(rng.integers(0, n_samples, n_spikes)) if n_spikes else np.zeros(0, int)
        t, rest = np.divmod(flat, n_bl * n_chan)
        b, c = np.divmod(rest, n_chan)
        spikes = np.stack([t, b, c, np.full(flat.size, float(spike_strength))],
                          axis=1).astype(np.float64).reshape(-1, 4)
        return cls(int(seed), lines, bursts, spikes)

    def amplitude(self, time_index, chan_index, n_bl: int) -> np.ndarray:
        """RFI strength (in sigma units) of each sample of a block, before phases.

        Returns
        -------
        ndarray, shape (n_time, n_bl, n_chan), float64
            Zero where there is no RFI.
        """
        ti = np.asarray(time_index)
        ci = np.asarray(chan_index)
        amp = np.zeros((ti.size, n_bl, ci.size))
        for c0, c1, s in self.lines:
            sel = (ci >= c0) & (ci < c1)
            amp[:, :, sel] += s
        for t0, t1, c0, c1, s in self.bursts:
            tsel = (ti >= t0) & (ti < t1)
            csel = (ci >= c0) & (ci < c1)
            amp[np.ix_(tsel, np.ones(n_bl, bool), csel)] += s
        if self.spikes.size and ti.size and ci.size:
            t, b, c, s = self.spikes.T
            inside = (t >= ti[0]) & (t <= ti[-1]) & (c >= ci[0]) & (c <= ci[-1])
            if np.any(inside):
                tpos = np.searchsorted(ti, t[inside])
                cpos = np.searchsorted(ci, c[inside])
                ok = (ti[np.minimum(tpos, ti.size - 1)] == t[inside]) & (
                    ci[np.minimum(cpos, ci.size - 1)] == c[inside])
                np.add.at(amp, (tpos[ok], b[inside][ok].astype(int), cpos[ok]), s[inside][ok])
        return amp

    def block(self, time_index, chan_index, sigma, n_pol: int, *, out=None) -> np.ndarray:
        """The additive RFI of a block.

        Parameters
        ----------
        time_index, chan_index : array of int, shape (n_time,), (n_chan,)
            Global indices of the block's time steps and channels.
        sigma : array, shape (n_bl,)
            Noise sigma per baseline, Jy.
        n_pol : int
        out : ndarray, shape (n_time, n_bl, n_chan, n_pol), complex, optional
            Add the RFI to this array in place instead of returning a new one.

        Returns
        -------
        ndarray, shape (n_time, n_bl, n_chan, n_pol), complex64 (or ``out``)
        """
        sigma = np.asarray(sigma, dtype=np.float64)
        amp = self.amplitude(time_index, chan_index, sigma.size) * sigma[None, :, None]
        if out is None:
            out = np.zeros(amp.shape + (n_pol,), dtype=np.complex64)
        for i, t in enumerate(np.asarray(time_index)):
            for j, c in enumerate(np.asarray(chan_index)):
                a = amp[i, :, j]
                if not np.any(a):
                    continue
                phase = slab_rng(self.seed, STREAM_RFI, t, c).uniform(0, 2 * np.pi, (a.size, n_pol))
                out[i, :, j, :] += a[:, None] * np.exp(1j * phase)
        return out
