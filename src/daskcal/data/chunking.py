"""Chunk specifications: by counts along time/frequency, or by a target size in MB.

Chunking follows DESIGN.md: along ``time`` and ``frequency`` only;
``baseline_id`` and ``polarization`` stay whole so a solver sees every antenna.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Union

from dask.utils import parse_bytes

from daskcal import DaskcalError

#: ``{"time": n, "frequency": m}`` counts (``-1`` = whole axis), or a size such as
#: ``"64MB"`` / ``64_000_000`` (bytes of the VISIBILITY chunk), or ``None`` (whole).
ChunkSpec = Union[Mapping[str, int], str, int, None]  # noqa: UP007

#: Bytes per visibility sample across VISIBILITY (8), FLAG (1) and WEIGHT (4).
BYTES_PER_SAMPLE = 13


class ChunkSpecError(DaskcalError, ValueError):
    """A chunk specification that makes no sense."""


def parse_chunk_spec(spec: ChunkSpec) -> dict[str, int] | int | None:
    """Normalise a chunk spec to ``{"time": n, "frequency": m}``, a byte count, or None.

    Accepts strings like ``"64MB"``, ``"1GiB"``, ``"time=100,frequency=64"``.

    Raises
    ------
    ChunkSpecError
        For non-positive counts, unknown dimensions or unparsable strings.
    """
    if spec is None:
        return None
    if isinstance(spec, bool):
        raise ChunkSpecError(f"chunk size {spec!r} is not a size or a count")
    if isinstance(spec, numbers.Real):
        if not math.isfinite(spec) or spec < 1:
            raise ChunkSpecError(f"chunk size {spec!r} must be positive")
        return int(spec)
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise ChunkSpecError("chunk size '' is empty")
        if "=" in text:
            out = {}
            for part in text.split(","):
                key, _, val = part.partition("=")
                try:
                    out[key.strip()] = int(val)
                except ValueError:
                    raise ChunkSpecError(f"chunk size {spec!r}: {val!r} is not an integer") from None
            return parse_chunk_spec(out)
        try:
            nbytes = parse_bytes(text)
        except (ValueError, TypeError):
            raise ChunkSpecError(
                f"chunk size {spec!r} is neither a size (e.g. '64MB') nor counts "
                "(e.g. 'time=100,frequency=64')") from None
        if nbytes <= 0:
            raise ChunkSpecError(f"chunk size {spec!r} must be positive")
        return int(nbytes)
    if isinstance(spec, Mapping):
        out = {}
        for key, val in spec.items():
            if key not in ("time", "frequency"):
                raise ChunkSpecError(
                    f"chunk size: cannot chunk along {key!r}; only 'time' and 'frequency'")
            if not isinstance(val, numbers.Integral) or isinstance(val, bool) or (val <= 0 and val != -1):
                raise ChunkSpecError(f"chunk size: {key}={val!r} must be a positive integer or -1")
            out[key] = int(val)
        return out
    raise ChunkSpecError(f"chunk size {spec!r} is not understood")


def resolve_chunks(
    spec: ChunkSpec, n_time: int, n_bl: int, n_chan: int, n_pol: int
) -> dict[str, int]:
    """Chunk lengths along ``time`` and ``frequency`` for a partition of the given shape.

    A byte target keeps whole channels when one time step fits, otherwise
    splits frequency; the target counts VISIBILITY+FLAG+WEIGHT bytes.

    Returns
    -------
    dict
        ``{"time": n, "frequency": m}`` with ``1 <= n <= n_time``, ``1 <= m <= n_chan``.
    """
    parsed = parse_chunk_spec(spec)
    n_time, n_chan = max(n_time, 1), max(n_chan, 1)
    if parsed is None:
        return {"time": n_time, "frequency": n_chan}
    if isinstance(parsed, dict):
        t = parsed.get("time", -1)
        f = parsed.get("frequency", -1)
        return {"time": n_time if t == -1 else min(t, n_time),
                "frequency": n_chan if f == -1 else min(f, n_chan)}
    per_time_chan = max(n_bl * n_pol * BYTES_PER_SAMPLE, 1)
    per_time = per_time_chan * n_chan
    if per_time <= parsed:
        return {"time": max(1, min(n_time, parsed // per_time)), "frequency": n_chan}
    return {"time": 1, "frequency": max(1, min(n_chan, parsed // per_time_chan))}


def aligned_chunk(chunks: tuple[int, ...], size: int) -> int:
    """A chunk length that is a multiple of ``size`` and close to the current ``chunks``.

    Stages whose cells (averaging bins, solution intervals) must not straddle chunks
    rechunk to it.
    """
    return max(size, (max(chunks) // size) * size)


def chunk_data_vars(xds, chunks: Mapping[str, int | tuple[int, ...]]):
    """Rechunk the data variables only; coordinates stay as they are (numpy).

    ``xarray.Dataset.chunk`` also turns non-index coordinates such as
    ``baseline_antenna1_name`` into dask arrays, after which reading them
    triggers a computation. daskcal keeps coordinates in memory (they are small)
    and chunks only the data variables.

    Parameters
    ----------
    xds : xarray.Dataset
    chunks : mapping of dimension name to a chunk length (``-1`` = whole) or chunk tuple

    Returns
    -------
    xarray.Dataset
    """
    out = xds.copy()
    for name, var in xds.data_vars.items():
        c = {d: chunks[d] for d in var.dims if d in chunks}
        if not c and var.chunks is not None:
            continue
        full = {d: c.get(d, -1) for d in var.dims}
        out[name] = var.variable.chunk(full)
    # coordinates that are already dask-backed follow, so that chunks stay consistent
    for name, coord in xds.coords.items():
        if coord.chunks is not None and name not in xds.indexes:
            c = {d: chunks[d] for d in coord.dims if d in chunks}
            if c:
                out = out.assign_coords({name: coord.variable.chunk(
                    {d: c.get(d, -1) for d in coord.dims})})
    return out
