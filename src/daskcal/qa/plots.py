"""Weblog plots (PNG) from computed QA summaries (:mod:`daskcal.qa.summary`).

Figures are made with :class:`matplotlib.figure.Figure` and the Agg canvas directly
(no ``pyplot``: no global state, safe in threads and without a display). Each function
writes one PNG and returns its path.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

_DPI = 90


def _figure(n_rows: int = 1, n_cols: int = 1, size: tuple[float, float] = (8.0, 4.0)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=_DPI, layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def _save(fig: Any, path: str | os.PathLike, *more: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` (PNG, or JPEG for ``.jpg``/``.jpeg``) and to each of
    ``more``, each through a temporary file; returns ``path``.

    One file: ``savefig``. Several: the figure is laid out and drawn once and the
    picture encoded for each (``savefig`` would draw it again for every file).
    """
    paths = [Path(p) for p in (path, *more)]
    rgba = None
    with warnings.catch_warnings():
        # many panels (a gains plot of many directions) can leave constrained layout no
        # room: the figure is still right, only less tidy
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        if more:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from PIL import Image

            canvas = FigureCanvasAgg(fig)
            canvas.draw()
            rgba = Image.fromarray(np.asarray(canvas.buffer_rgba()))
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            jpeg = p.suffix.lower() in (".jpg", ".jpeg")
            tmp = p.with_name(f".{p.name}.tmp")
            if rgba is None:
                fig.savefig(tmp, format="jpeg" if jpeg else "png")
            elif jpeg:
                rgba.convert("RGB").save(tmp, format="JPEG", quality=90)
            else:
                rgba.save(tmp, format="PNG")
            os.replace(tmp, p)
    return paths[0]


def _rel_time(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, np.float64)
    return (t - t[0]) / 60.0 if t.size else t


def plot_uv(vis: xr.Dataset, path: str | os.PathLike) -> Path:
    """uv coverage (metres, with the conjugate points), decimated in time."""
    fig, ax = _figure(size=(5.0, 5.0))
    uvw = np.asarray(vis["UVW"].values, np.float64)
    u, v = uvw[..., 0].ravel(), uvw[..., 1].ravel()
    a = ax[0, 0]
    a.plot(u, v, ",", color="C0")
    a.plot(-u, -v, ",", color="C1")
    a.set_xlabel("u (m)")
    a.set_ylabel("v (m)")
    a.set_aspect("equal", adjustable="datalim")
    a.set_title("uv coverage")
    return _save(fig, path)


def plot_vis_time(vis: xr.Dataset, path: str | os.PathLike) -> Path:
    """Amplitude and (vector-averaged) phase of the data against time, per correlation."""
    fig, ax = _figure(2, 1, size=(8.0, 5.0))
    var = vis.attrs.get("vis_var", "VISIBILITY")
    for p in vis["polarization"].values:
        amp = vis["AMP_TIME"].sel(polarization=p)
        ax[0, 0].plot(_rel_time(amp["time"].values), amp.values, ".-", label=str(p))
        ph = vis["PHASE_TIME"].sel(polarization=p)
        ax[1, 0].plot(_rel_time(ph["phase_time"].values), np.degrees(ph.values), ".",
                      label=str(p))
    ax[0, 0].set_ylabel("amplitude (Jy)")
    ax[0, 0].set_title(f"{var} against time (mean over baselines and channels)")
    ax[0, 0].legend(fontsize="small", ncols=4)
    ax[1, 0].set_ylabel("phase (deg)")
    ax[1, 0].set_xlabel("time since start (min)")
    return _save(fig, path)


def plot_vis_freq(vis: xr.Dataset, path: str | os.PathLike) -> Path:
    """Amplitude and (vector-averaged) phase of the data against frequency."""
    fig, ax = _figure(2, 1, size=(8.0, 5.0))
    var = vis.attrs.get("vis_var", "VISIBILITY")
    for p in vis["polarization"].values:
        amp = vis["AMP_FREQ"].sel(polarization=p)
        ax[0, 0].plot(amp["frequency"].values / 1e6, amp.values, ".-", label=str(p))
        ph = vis["PHASE_FREQ"].sel(polarization=p)
        ax[1, 0].plot(ph["phase_frequency"].values / 1e6, np.degrees(ph.values), ".",
                      label=str(p))
    ax[0, 0].set_ylabel("amplitude (Jy)")
    ax[0, 0].set_title(f"{var} against frequency (mean over baselines and times)")
    ax[0, 0].legend(fontsize="small", ncols=4)
    ax[1, 0].set_ylabel("phase (deg)")
    ax[1, 0].set_xlabel("frequency (MHz)")
    return _save(fig, path)


def plot_flag_map(vis: xr.Dataset, path: str | os.PathLike) -> Path:
    """Flagged fraction over time x frequency (mean over baselines and correlations)."""
    fig, ax = _figure(size=(8.0, 4.0))
    ftf = vis["FLAG_TIME_FREQ"]
    t = _rel_time(ftf["time"].values)
    f = ftf["frequency"].values / 1e6
    extent = [f.min(), f.max() if f.size > 1 else f.min() + 1e-3,
              t.max() if t.size > 1 else 1.0, t.min()]
    im = ax[0, 0].imshow(np.asarray(ftf.values), aspect="auto", vmin=0, vmax=1,
                         cmap="viridis", extent=extent, interpolation="nearest")
    fig.colorbar(im, ax=ax[0, 0], label="flagged fraction")
    ax[0, 0].set_xlabel("frequency (MHz)")
    ax[0, 0].set_ylabel("time since start (min)")
    ax[0, 0].set_title("flagged fraction")
    return _save(fig, path)


def plot_antenna_flags(after: xr.DataArray, before: xr.DataArray | None,
                       path: str | os.PathLike) -> Path:
    """Bar chart of the flagged fraction per antenna (before and after the step)."""
    names = [str(n) for n in after["antenna_name"].values]
    x = np.arange(len(names))
    fig, ax = _figure(size=(max(6.0, 0.25 * len(names) + 2), 3.5))
    a = ax[0, 0]
    if before is not None:
        a.bar(x - 0.2, before.values, width=0.4, label="before", color="C7")
        a.bar(x + 0.2, after.values, width=0.4, label="after", color="C3")
        a.legend(fontsize="small")
    else:
        a.bar(x, after.values, color="C3")
    a.set_xticks(x, names, rotation=90, fontsize="small")
    a.set_ylim(0, 1)
    a.set_ylabel("flagged fraction")
    a.set_title("flagged fraction per antenna")
    return _save(fig, path)


def _gain_lines(ax_amp: Any, ax_ph: Any, g: xr.Dataset, along: str, x: np.ndarray) -> None:
    other = "plot_frequency" if along == "plot_time" else "plot_time"
    amp = g["AMP"].where(~g["FLAG"])
    ph = g["PHASE"].where(~g["FLAG"])
    for i, ant in enumerate(g["antenna_name"].values):
        for j, rec in enumerate(g["receptor"].values):
            sel = {"antenna_name": ant, "receptor": rec}
            style = "-" if j == 0 else "--"
            a = amp.sel(sel).mean(other).values
            p = np.degrees(ph.sel(sel).mean(other).values)
            label = str(ant) if j == 0 else None
            ax_amp.plot(x, a, style, color=f"C{i % 10}", label=label, lw=1)
            ax_ph.plot(x, p, style, color=f"C{i % 10}", lw=1)


def plot_gains(g: xr.Dataset, along: str, path: str | os.PathLike) -> Path:
    """Gain amplitude and phase (relative to the reference antenna) per antenna.

    Parameters
    ----------
    g : xarray.Dataset
        A gains summary (:func:`daskcal.qa.summary.gains_summary`), computed.
    along : {"time", "frequency"}
        The x axis (the other is averaged over).
    path : path-like
    """
    dim = f"plot_{along}"
    vals = np.asarray(g[dim].values, np.float64)
    x = _rel_time(vals) if along == "time" else vals / 1e6
    fig, ax = _figure(2, 1, size=(8.0, 5.5))
    _gain_lines(ax[0, 0], ax[1, 0], g, dim, x)
    ax[0, 0].set_ylabel("amplitude")
    ax[0, 0].set_title(f"gains against {along} (solid: first receptor, dashed: second; "
                       f"reference {g.attrs.get('ref_antenna', '')})", fontsize="medium")
    if g.sizes["antenna_name"] <= 24:
        ax[0, 0].legend(fontsize="x-small", ncols=6)
    ax[1, 0].set_ylabel("phase (deg)")
    ax[1, 0].set_xlabel("time since start (min)" if along == "time" else "frequency (MHz)")
    return _save(fig, path)


def plot_chi2(g: xr.Dataset, path: str | os.PathLike) -> Path:
    """Reduced chi-squared of the solutions against time (per frequency cell)."""
    fig, ax = _figure(size=(8.0, 3.0))
    chi2 = g["CHI2"]
    t = _rel_time(chi2["gain_time"].values)
    for k in range(chi2.sizes["gain_frequency"]):
        ax[0, 0].plot(t, chi2.isel(gain_frequency=k).values, ".", ms=3, color="C0")
    ax[0, 0].axhline(1.0, color="k", lw=0.5)
    ax[0, 0].set_xlabel("time since start (min)")
    ax[0, 0].set_ylabel("reduced chi-squared")
    return _save(fig, path)


def plot_timing(steps: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Duration of each step (bars) with its number of tasks."""
    names = [f"{s.get('index', '')} {s['name']}" for s in steps]
    durations = [float(s.get("duration_s") or 0.0) for s in steps]
    fig, ax = _figure(size=(8.0, 0.4 * len(steps) + 1.2))
    a = ax[0, 0]
    y = np.arange(len(steps))
    colors = ["C7" if s.get("status") == "skipped" else "C0" for s in steps]
    a.barh(y, durations, color=colors)
    for yi, s, d in zip(y, steps, durations, strict=True):
        note = s.get("status", "")
        if s.get("n_tasks"):
            note += f", {s['n_tasks']} tasks"
        a.text(d, yi, f" {note}", va="center", fontsize="small")
    a.set_yticks(y, names)
    a.invert_yaxis()
    a.set_xlabel("duration (s)")
    a.set_title("step timing (grey: skipped, time of the original run)")
    return _save(fig, path)


def plot_image(xds: xr.Dataset, var: str, path: str | os.PathLike,
               *more: str | os.PathLike) -> Path:
    """A sky image (east left, north up) with its colour bar and restoring beam.

    Parameters
    ----------
    xds : xarray.Dataset
        An image dataset (``var`` with dims ``(l, m)``, axis 0 east; attrs ``cell_rad``
        and, optionally, ``bmaj_rad``/``bmin_rad``/``bpa_rad``, ``field_name``).
    var : str
    path : path-like
        ``.png`` or ``.jpg``.
    *more : path-like
        Further files of the same picture (e.g. a JPEG beside the PNG): drawn once.

    Returns
    -------
    Path
        ``path``.
    """
    from matplotlib.patches import Ellipse

    img = np.asarray(xds[var].values, dtype=np.float64)
    cell_arcmin = np.degrees(float(xds.attrs.get("cell_rad", 0.0))) * 60.0
    n0, n1 = img.shape
    # pixel i is at l = (i - n0 // 2) cell (east); shown east-left: columns reversed
    extent = ((n0 - 1 - n0 // 2 + 0.5) * cell_arcmin, (-(n0 // 2) - 0.5) * cell_arcmin,
              (-(n1 // 2) - 0.5) * cell_arcmin, (n1 - 1 - n1 // 2 + 0.5) * cell_arcmin)
    finite = img[np.isfinite(img)]
    lo, hi = (np.percentile(finite, [1.0, 99.9]) if finite.size else (0.0, 1.0))
    fig, ax = _figure(size=(5.5, 4.6))
    a = ax[0, 0]
    shown = a.imshow(img[::-1, :].T, origin="lower", extent=extent, vmin=lo, vmax=hi, cmap="inferno",
                     interpolation="nearest")
    fig.colorbar(shown, ax=a, label=str(xds[var].attrs.get("units", "Jy/beam")))
    if xds.attrs.get("bmaj_rad"):
        bmaj, bmin = (np.degrees(float(xds.attrs[k])) * 60 for k in ("bmaj_rad", "bmin_rad"))
        pa = np.degrees(float(xds.attrs.get("bpa_rad", 0.0)))
        a.add_patch(Ellipse((extent[0] - 0.08 * (extent[0] - extent[1]),
                             extent[2] + 0.08 * (extent[3] - extent[2])),
                            bmin, bmaj, angle=pa, fc="none", ec="w"))
    a.set_xlabel("east offset (arcmin)")
    a.set_ylabel("north offset (arcmin)")
    a.set_title(f"{xds.attrs.get('field_name') or ''} {var.lower()}".strip())
    return _save(fig, path, *more)


__all__ = ["plot_antenna_flags", "plot_chi2", "plot_flag_map", "plot_gains", "plot_image",
           "plot_timing", "plot_uv", "plot_vis_freq", "plot_vis_time"]
