"""Small synthetic observations and deliberately misbehaved inputs, for tests and examples.

:func:`random_observation` builds a tiny observation of random data in memory
(for store and stage tests); the realistic simulator is
:func:`daskcal.testing.simulate.simulate_observation`. The ``misbehaved_*``
factories write the broken inputs that the readers and the command line must
refuse with a one-line error.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from daskcal.data import model

LINEAR_POLS = ("XX", "XY", "YX", "YY")
#: ITRF position near the VLA array centre, metres.
VLA_CENTRE_ITRF_M = np.array([-1601185.4, -5041977.5, 3554875.9])


def random_observation(
    seed: int = 0,
    *,
    n_time: int = 5,
    n_ant: int = 4,
    fields: Sequence[str] = ("F0",),
    spws: Sequence[tuple[float, int]] = ((1.4e9, 6),),
    pols: Sequence[str] = LINEAR_POLS,
    chunks: tuple[int, int] | None = None,
    flag_fraction: float = 0.1,
) -> xr.DataTree:
    """A small observation of random data: one partition per field x spectral window.

    Parameters
    ----------
    seed : int
    n_time, n_ant : int
        Integrations (10 s apart) and antennas (within 500 m of the VLA centre).
    fields : sequence of str
        Field names; field ``i`` starts at ``1.7e9 + 1000 i`` unix seconds.
    spws : sequence of (first frequency in Hz, number of channels)
        Spectral windows; channels are 1 MHz wide.
    pols : sequence of str
    chunks : (time, frequency) or None
        Dask chunks of the visibility variables; ``None`` keeps numpy arrays.
    flag_fraction : float
        Fraction of samples flagged at random.

    Returns
    -------
    xarray.DataTree
        Partitions named ``obs_0``, ``obs_1``, ... passing the schema check.
    """
    rng = np.random.default_rng(seed)
    names = [f"A{i}" for i in range(n_ant)]
    positions = VLA_CENTRE_ITRF_M + rng.uniform(-500, 500, (n_ant, 3))
    parts = {}
    for fi, field in enumerate(fields):
        for si, (f0, n_chan) in enumerate(spws):
            a1, a2 = model.baseline_antenna_pairs(n_ant)
            shape = (n_time, a1.size, n_chan, len(pols))
            vis = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
            flag = rng.random(shape) < flag_fraction
            weight = (rng.random(shape) + 0.5).astype(np.float32)
            if chunks is not None:
                import dask.array as da

                vis, flag, weight = (da.from_array(x, chunks=(chunks[0], -1, chunks[1], -1))
                                     for x in (vis, flag, weight))
            xds = model.make_visibility_xds(
                time_s=1.7e9 + 1000.0 * fi + 10.0 * np.arange(n_time),
                frequency_hz=f0 + 1e6 * np.arange(n_chan), polarization=list(pols),
                antenna_names=names, antenna1=a1, antenna2=a2, visibility=vis,
                uvw_m=rng.standard_normal((n_time, a1.size, 3)) * 1e3, integration_time_s=10.0,
                channel_width_hz=1e6, flag=flag, weight=weight, field_name=field,
                scan_name=str(fi + 1), spectral_window_name=f"spw_{si}", observer="me",
                project="P1")
            ant = model.make_antenna_xds(names, positions, 25.0, telescope_name="VLA")
            fld = model.make_field_and_source_xds([field], [[0.5 + fi, 0.3 + 0.1 * fi]])
            parts[f"obs_{len(parts)}"] = model.make_partition(xds, ant, fld)
    return model.make_observation(parts)


def misbehaved_not_an_ms(directory: Path) -> Path:
    """A directory that looks like nothing daskcal reads."""
    path = Path(directory) / "notms.ms"
    path.mkdir(parents=True)
    (path / "README").write_text("not a table\n")
    return path


def misbehaved_ms_without_data(directory: Path, seed: int = 0) -> Path:
    """A valid Measurement Set whose DATA column has been removed."""
    from casacore.tables import table

    from daskcal.data.ms_write import write_ms

    path = write_ms(random_observation(seed), Path(directory) / "nodata.ms")
    with table(str(path), readonly=False, ack=False) as t:
        t.removecols(["DATA"])
    return path


def misbehaved_truncated_zarr(store: Path, directory: Path, fraction: float = 0.5) -> Path:
    """A copy of a daskcal zarr store that lost some chunk files of VISIBILITY.

    Parameters
    ----------
    store : Path
        A complete store to copy.
    directory : Path
        Where to put the damaged copy (``truncated.zarr``).
    fraction : float
        Fraction of the first partition's VISIBILITY chunk files deleted (at least one).
    """
    out = Path(directory) / "truncated.zarr"
    shutil.copytree(store, out)
    vis_dirs = sorted(p for p in out.rglob("VISIBILITY") if p.is_dir())
    files = sorted(p for p in (vis_dirs[0] / "c").rglob("*") if p.is_file())
    for p in files[: max(1, int(len(files) * fraction))]:
        p.unlink()
    return out
