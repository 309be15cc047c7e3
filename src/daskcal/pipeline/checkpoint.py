"""Resumable step outputs: zarr stores written region by region, with completion markers.

A step's output ``steps/NN-name.zarr`` is built in three phases:

1. **initialise** ``steps/NN-name.zarr.partial``: the whole tree's metadata, the
   coordinates and every numpy-backed variable (``DataTree.to_zarr(compute=False)``,
   with the encodings of :mod:`daskcal.data.zarr_store`); then the file
   ``steps/NN-name.zarr.progress/initialised`` holding the step's fingerprint;
2. **regions**: the Dask-backed variables of each node are written as chunk-aligned
   regions along ``time`` (or ``gain_time``), one region per zarr chunk row
   (``dask.array.store`` into the zarr arrays; ``Dataset.to_zarr(region=...)`` for a
   variable that needs a CF encoding). The task that writes a region then writes
   its marker ``steps/NN-name.zarr.progress/<region>.json``; a rerun of the same
   step (same fingerprint) skips regions whose marker exists, so a run killed half
   way resumes without recomputing what was written;
3. **publish**: once every region is marked, the completion attribute is set, the
   metadata consolidated, and the store renamed to ``steps/NN-name.zarr`` (an old
   output of another fingerprint is replaced only then). The progress directory is
   removed last.

A partial store whose fingerprint differs from the step's, or that was never fully
initialised, is discarded. Markers are written by the workers, so the run directory
must be on a file system that the driver and the workers share (as the zarr stores
themselves must be).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

#: Root attribute of a step's output store: ``{"step", "stage", "fingerprint"}``.
STEP_ATTR = "daskcal_step"
#: Dimensions along which outputs are split into regions, in order of preference.
REGION_DIMS: tuple[str, ...] = ("time", "gain_time")


@dataclass(frozen=True)
class Region:
    """A chunk-aligned slab of one node of the output tree.

    Attributes
    ----------
    node : str
        The node's path in the tree (``"/"`` for the root).
    dim : str or None
        The dimension sliced, or None for the node's variables without a region
        dimension (written whole).
    start, stop : int
        The slice along ``dim``.
    """

    node: str
    dim: str | None
    start: int
    stop: int

    @property
    def key(self) -> str:
        """File-name-safe identifier of the region (its marker's name)."""
        node = self.node.strip("/").replace("/", "~") or "root"
        return f"{node}@{self.dim or 'static'}@{self.start}-{self.stop}"


def _dask_vars(xds: xr.Dataset) -> list[str]:
    return [str(n) for n, v in xds.data_vars.items() if v.chunks is not None]


def plan_regions(tree: xr.DataTree, encoding: dict[str, dict]) -> list[Region]:
    """The regions of a prepared tree: per node, one per zarr chunk row of its region dim.

    Where the variables of a node have different zarr chunk lengths along the
    region dimension, a region spans their least common multiple.
    """
    regions: list[Region] = []
    for node in tree.subtree:
        xds = node.to_dataset(inherit=False)
        names = _dask_vars(xds)
        if not names:
            continue
        enc = encoding.get(node.path, {})
        dim = next((d for d in REGION_DIMS if any(d in xds[n].dims for n in names)), None)
        static = [n for n in names if dim is None or dim not in xds[n].dims]
        if static:
            regions.append(Region(node.path, None, 0, 0))
        if dim is None:
            continue
        step = 1
        for n in names:
            if dim in xds[n].dims:
                chunks = enc.get(n, {}).get("chunks")
                axis = xds[n].dims.index(dim)
                length = chunks[axis] if chunks else max(xds[n].chunksizes[dim])
                step = math.lcm(step, int(length))
        size = xds.sizes[dim]
        regions += [Region(node.path, dim, a, min(a + step, size)) for a in range(0, size, step)]
    return regions


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, path)


#: Attributes of a stored variable that make xarray transform its values when writing
#: (CF encodings): such variables go through ``Dataset.to_zarr``.
_ENCODING_ATTRS = frozenset({"_FillValue", "missing_value", "scale_factor", "add_offset",
                             "dtype", "calendar", "_Unsigned"})


def _optimized(xds: xr.Dataset) -> xr.Dataset:
    """``xds`` with the graphs of its Dask-backed variables optimised together (as
    :func:`dask.array.store` would optimise what it stores: blockwise layers fused), once
    for all the regions of a node. The variables keep their names, so the step's QA,
    built on the unoptimised graphs, shares their blocks."""
    import dask

    names = _dask_vars(xds)
    if not names:
        return xds
    optimized = dask.optimize(*(xds[n].data for n in names))
    return xds.assign({n: xds[n].copy(data=a) for n, a in zip(names, optimized, strict=True)})


def _direct_plan(group: Any, xds: xr.Dataset, names: list[str], region: Region
                 ) -> tuple[list[tuple[Any, list[tuple]]], list[tuple]] | None:
    """What one task must store to write a region straight into the zarr arrays, or None.

    ``Dataset.to_zarr(region=..., compute=False)`` opens and checks the store again
    for every region (~30 ms in the driver, per region of every step), and
    ``dask.array.store`` adds a task per block and variable, then one to join them; the
    variables of our outputs (numbers, flags) are written as they are, by one task per
    region (:func:`_store_blocks`). None (the caller uses ``to_zarr``) when a
    variable's stored dtype differs from its own, it is not a plain number or boolean,
    or its stored attributes ask for a CF encoding.

    Returns
    -------
    plan : list of (zarr.Array, list of (target selection, block selection))
        Per variable, its target array and, per dask block overlapping the region,
        where the block's part goes and which part of the block it is.
    keys : list of tuple
        The dask keys of those blocks, in the order of ``plan``.
    """
    plan, keys = [], []
    for name in names:
        var = xds[name]
        try:
            target = group[name]
        except KeyError:
            return None
        if (var.dtype.kind not in "biufc" or target.dtype != var.dtype
                or target.shape != var.shape or _ENCODING_ATTRS & set(target.attrs)):
            return None
        axis = var.dims.index(region.dim) if region.dim in var.dims else None
        parts = []
        for index, block in _blocks(var.data.chunks, axis, region.start, region.stop):
            parts.append(block)
            keys.append((var.data.name, *index))
        plan.append((target.with_config({"write_empty_chunks": True}), parts))
    return plan, keys


def _blocks(chunks: tuple[tuple[int, ...], ...], axis: int | None, start: int, stop: int
            ) -> Iterable[tuple[tuple[int, ...], tuple[tuple[slice, ...], tuple[slice, ...]]]]:
    """The blocks of a chunked array that overlap ``[start, stop)`` along ``axis`` (all of
    them when ``axis`` is None): their index, and per block the target selection (in the
    whole array) and the selection within the block."""
    import itertools

    bounds = [list(itertools.accumulate(c, initial=0)) for c in chunks]
    per_axis = []
    for ax, edges in enumerate(bounds):
        lo, hi = (start, stop) if ax == axis else (0, edges[-1])
        per_axis.append([(i, max(a, lo), min(b, hi), a) for i, (a, b)
                         in enumerate(zip(edges[:-1], edges[1:], strict=True))
                         if (a < hi and b > lo) or (a == b == lo == hi)])
    for combo in itertools.product(*per_axis):
        index = tuple(c[0] for c in combo)
        target = tuple(slice(a, b) for _, a, b, _ in combo)
        local = tuple(slice(a - o, b - o) for _, a, b, o in combo)
        yield index, (target, local)


def _store_blocks(marker: str, attempt: str, plan: list[tuple[Any, list[tuple]]],
                  *blocks: Any) -> str:
    """Store a region's blocks into their zarr arrays, then write its marker (one task,
    on a worker)."""
    values = iter(blocks)
    for target, parts in plan:
        for where, within in parts:
            target[where] = next(values)[within]
    return _mark(None, marker, attempt)


def _write_region(store: str, group: Any, xds: xr.Dataset, region: Region, marker: str,
                  attempt: str) -> Any:
    """The lazy write of one region, ending with its marker (a Delayed, keyed
    ``mark-<region>-<attempt>``): one task storing the blocks into ``group`` (the node's
    zarr group in ``store``, open; :func:`_direct_plan`), else ``Dataset.to_zarr`` and a
    marker task after it."""
    import dask

    from daskcal.data.zarr_store import quiet_zarr

    key = f"mark-{region.key}-{attempt}"
    if region.dim is None:
        names = [n for n in _dask_vars(xds) if not any(d in xds[n].dims for d in REGION_DIMS)]
    else:
        names = [n for n in _dask_vars(xds) if region.dim in xds[n].dims]
    direct = _direct_plan(group, xds, names, region)
    if direct is not None:
        from dask._task_spec import Task, TaskRef
        from dask.delayed import Delayed
        from dask.highlevelgraph import HighLevelGraph

        plan, keys = direct
        arrays = {xds[n].data.name: xds[n].data for n in names}
        task = Task(key, _store_blocks, marker, attempt, plan, *map(TaskRef, keys))
        graph = HighLevelGraph.from_collections(key, {key: task},
                                                dependencies=list(arrays.values()))
        return Delayed(key, graph)
    span = {} if region.dim is None else {region.dim: slice(region.start, region.stop)}
    sub = xds[names].isel(span)
    kwargs: dict[str, Any] = {"region": span} if span else {}
    sub = sub.drop_vars(list(sub.coords)).drop_encoding()
    sub.attrs = {}
    with quiet_zarr():
        write = sub.to_zarr(store, group=region.node, mode="r+", compute=False,
                            write_empty_chunks=True, zarr_format=3, consolidated=False,
                            **kwargs)
    return dask.delayed(_mark, pure=False)(write, marker, attempt, dask_key_name=key)


def _mark(_written: Any, marker: str, attempt: str) -> str:
    """Write a region's marker (runs on a worker, after the region's write)."""
    _atomic_write(Path(marker), json.dumps({
        "attempt": attempt, "finished": _dt.datetime.now(_dt.UTC).isoformat()}))
    return marker


class StepStore:
    """The output store of one step and its resumable writing.

    Parameters
    ----------
    path : path-like
        The published location, ``RUN_DIR/steps/NN-name.zarr``.
    fingerprint : str
        The step's fingerprint (config and inputs); outputs and partial stores of
        another fingerprint are not reused.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.progress = self.path.with_name(self.path.name + ".progress")

    # ------------------------------------------------------------------ state

    def published_fingerprint(self) -> str | None:
        """The fingerprint of the complete published output, or None if there is none."""
        from daskcal.data.zarr_store import check_zarr_store

        meta = self.path / "zarr.json"
        if not meta.is_file() or check_zarr_store(self.path):
            return None
        try:
            attrs = json.loads(meta.read_text()).get("attributes") or {}
        except (OSError, json.JSONDecodeError):
            return None
        return (attrs.get(STEP_ATTR) or {}).get("fingerprint")

    def is_done(self) -> bool:
        """Whether the published output is complete and of this fingerprint."""
        return self.published_fingerprint() == self.fingerprint

    def marked(self) -> set[str]:
        """Keys of the regions already written (their markers exist)."""
        if not self.progress.is_dir():
            return set()
        return {p.name[:-5] for p in self.progress.glob("*.json")}

    def _resumable(self) -> bool:
        init = self.progress / "initialised"
        return (self.partial.is_dir() and init.is_file()
                and init.read_text().strip() == self.fingerprint)

    # ------------------------------------------------------------------ writing

    def prepare(self, tree: xr.DataTree, attrs: dict[str, Any]
                ) -> tuple[xr.DataTree, list[Region], set[str]]:
        """Initialise (or reuse) the partial store.

        Parameters
        ----------
        tree : xarray.DataTree
            The step's lazy output.
        attrs : dict
            Extra root attributes (the step record), written with the metadata.

        Returns
        -------
        prepared : xarray.DataTree
            The tree as it is written (chunks regularised for zarr): pass it to
            :meth:`region_writes`.
        regions : list of Region
            Every region of the output.
        done : set of str
            Keys of the regions already written by an earlier attempt.
        """
        from daskcal.data.zarr_store import prepare_store, quiet_zarr

        prepared, encoding = prepare_store(tree, 1)
        regions = plan_regions(prepared, encoding)
        if self._resumable():
            return prepared, regions, self.marked() & {r.key for r in regions}
        shutil.rmtree(self.partial, ignore_errors=True)
        shutil.rmtree(self.progress, ignore_errors=True)
        self.progress.mkdir(parents=True)
        root = prepared.to_dataset(inherit=False)
        prepared = prepared.copy()
        prepared.attrs = {**root.attrs, **attrs,
                          STEP_ATTR: {**attrs.get(STEP_ATTR, {}), "fingerprint": self.fingerprint}}
        with quiet_zarr():
            prepared.to_zarr(self.partial, mode="w", encoding=encoding, consolidated=True,
                             zarr_format=3, write_empty_chunks=True, compute=False)
        _atomic_write(self.progress / "initialised", self.fingerprint)
        return prepared, regions, set()

    def region_writes(self, prepared: xr.DataTree, regions: Iterable[Region],
                      attempt: str) -> list[Any]:
        """Delayed writes of ``regions`` of the tree :meth:`prepare` returned.

        Each write is followed by the write of its marker (``attempt`` is recorded
        in the marker).
        """
        import zarr

        from daskcal.data.zarr_store import quiet_zarr

        out = []
        groups: dict[str, Any] = {}
        with quiet_zarr():
            root = zarr.open_group(str(self.partial), mode="r+", zarr_format=3,
                                   use_consolidated=False)
        nodes: dict[str, xr.Dataset] = {}
        for region in regions:
            if region.node not in groups:
                path = region.node.strip("/")
                groups[region.node] = root[path] if path else root
                nodes[region.node] = _optimized(prepared[region.node].to_dataset(inherit=False))
            xds = nodes[region.node]
            marker = str(self.progress / f"{region.key}.json")
            out.append(_write_region(str(self.partial), groups[region.node], xds, region,
                                     marker, attempt))
        return out

    def publish(self) -> Path:
        """Mark the partial store complete and move it into place (atomically)."""
        import zarr

        from daskcal.data.zarr_store import COMPLETE_ATTR, quiet_zarr

        group = zarr.open_group(self.partial, mode="r+", zarr_format=3, use_consolidated=False)
        group.attrs[COMPLETE_ATTR] = _dt.datetime.now(_dt.UTC).isoformat()
        with quiet_zarr():
            zarr.consolidate_metadata(self.partial, zarr_format=3)
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(self.path, old)
        os.rename(self.partial, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.progress, ignore_errors=True)
        return self.path


def store_bytes(path: str | os.PathLike) -> int:
    """Bytes on disk of the files under ``path``."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


__all__ = ["REGION_DIMS", "STEP_ATTR", "Region", "StepStore", "plan_regions", "store_bytes"]
