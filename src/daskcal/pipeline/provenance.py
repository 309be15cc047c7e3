"""Provenance: fingerprints of inputs and configs, package versions, the run record.

Fingerprints are cheap: nothing but metadata is read.

- a zarr store: the SHA-256 of its root ``zarr.json`` (which holds the consolidated
  metadata of every node and, for daskcal stores, the completion time: rewriting
  the store changes it);
- any other directory (a Measurement Set): names, sizes and modification times of
  its files, two levels deep;
- a file: its size and modification time.

A step's fingerprint is the hash of its stage, its fully defaulted config, the
fingerprints of its inputs (observations or upstream steps' fingerprints) and of
the files its config names (sky models). The run record ``RUN_DIR/provenance.json``
is rewritten atomically after every step.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

#: Version of the layout of ``provenance.json``.
PROVENANCE_FORMAT = 1
#: Packages whose versions are recorded.
VERSIONED_PACKAGES: tuple[str, ...] = ("daskcal", "dask", "distributed", "numpy", "numba",
                                       "xarray", "zarr", "pydantic")


def canonical_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``value`` (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _stat_entry(path: Path, base: Path) -> list[Any]:
    st = path.stat()
    return [str(path.relative_to(base)), st.st_size, st.st_mtime_ns]


def path_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """A cheap fingerprint of an observation or file (see the module notes).

    Returns
    -------
    dict
        ``{"path", "kind", "size", "mtime", "sha256"}``; ``size`` and ``mtime`` are
        those of the metadata looked at.
    """
    p = Path(path).resolve()
    if p.is_dir() and (p / "zarr.json").is_file():
        meta = p / "zarr.json"
        data = meta.read_bytes()
        st = meta.stat()
        return {"path": str(p), "kind": "zarr", "size": st.st_size,
                "mtime": _iso(st.st_mtime), "sha256": hashlib.sha256(data).hexdigest()}
    if p.is_dir():
        entries = []
        for child in sorted(p.iterdir()):
            if child.is_file():
                entries.append(_stat_entry(child, p))
            elif child.is_dir():
                entries += [_stat_entry(c, p) for c in sorted(child.iterdir()) if c.is_file()]
        return {"path": str(p), "kind": "directory", "size": sum(e[1] for e in entries),
                "mtime": _iso(max((e[2] for e in entries), default=0) / 1e9),
                "sha256": canonical_hash(entries)}
    st = p.stat()
    return {"path": str(p), "kind": "file", "size": st.st_size, "mtime": _iso(st.st_mtime),
            "sha256": canonical_hash([str(p), st.st_size, st.st_mtime_ns])}


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat()


def now_iso() -> str:
    """The current time, ISO 8601 UTC."""
    return _dt.datetime.now(_dt.UTC).isoformat()


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`VERSIONED_PACKAGES` (None where absent)."""
    out: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def step_fingerprint(stage: str, kind: str, config: Mapping[str, Any],
                     inputs: Mapping[str, str], files: Mapping[str, str]) -> str:
    """The fingerprint of a step.

    Parameters
    ----------
    stage, kind : str
        The stage's name and kind.
    config : mapping
        The fully defaulted config (JSON data).
    inputs : mapping of str to str
        Role (``"input"``, ``"gains"``) -> fingerprint of the observation or upstream step.
    files : mapping of str to str
        Config field -> content fingerprint of the file it names.
    """
    return canonical_hash({"format": PROVENANCE_FORMAT, "stage": stage, "kind": kind,
                           "config": config, "inputs": dict(inputs), "files": dict(files)})


def peak_memory(client: Any | None) -> dict[str, int]:
    """Peak resident memory of each worker process (bytes), or of this process.

    With a distributed client: the high-water mark of every worker process (``VmHWM``
    of ``/proc/self/status``: the peak of that process alone; ``ru_maxrss`` is not,
    Linux carries it over from the process that forked the worker, so a worker started
    by a 1 GB driver would report 1 GB). Without: this process's own.
    """
    if client is None:
        return {"driver": process_peak_rss()}
    try:
        return {str(k): int(v) for k, v in client.run(process_peak_rss).items()}
    except Exception:  # workers gone or not supported: provenance must not fail the run
        return {}


def process_peak_rss() -> int:
    """This process's peak resident memory, bytes (``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def read_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The run record at ``path`` (empty if absent or unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_provenance(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Write the run record atomically (a temporary sibling renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)


__all__ = ["PROVENANCE_FORMAT", "VERSIONED_PACKAGES", "canonical_hash", "now_iso",
           "package_versions", "path_fingerprint", "peak_memory", "process_peak_rss",
           "read_provenance", "step_fingerprint", "write_provenance"]
