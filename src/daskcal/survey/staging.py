"""Staging: checksummed, atomic copies of directory trees (observations in, products out).

:func:`copy_verified` copies a tree (a zarr store, a run's ``products/`` or
``weblog/``) file by file into a temporary sibling of the destination, computing the
SHA-256 of every source file and of its copy; a copy whose checksum differs is made
again (up to ``max_copies`` times), and only a fully verified tree is renamed into
place, with a manifest ``.daskcal-manifest.json`` (each file's SHA-256 and size, and
the source files' sizes and modification times). Staging again into an existing
destination whose manifest matches the source re-reads the destination, and re-copies
just the files whose checksum no longer matches (a corrupted copy is detected and
repaired) -- an unchanged, intact destination is left alone.

Symbolic links are followed (``products/average.zarr`` links into ``steps/``).

The copy itself is ``shutil.copyfile`` on paths the driver sees (a shared or mounted
file system per site); a deployment across the WAN passes another ``copy_file``
(a function ``(src, dst) -> None``) that moves bytes with its transfer tool --
the checksums are verified the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daskcal import DaskcalError

#: The manifest written at the root of every staged tree.
MANIFEST = ".daskcal-manifest.json"
_BUF = 1 << 20

CopyFile = Callable[[str, str], Any]


class StagingError(DaskcalError, OSError):
    """A tree that could not be copied with matching checksums (one line)."""


@dataclass(frozen=True)
class FileCopy:
    """One file copied.

    Attributes
    ----------
    path : str
        Relative to the tree's root (``/``-separated).
    sha256 : str
        Its SHA-256 (hex), verified at the destination.
    nbytes : int
        Its size, bytes.
    seconds : float
        Wall time of the copies and checksums.
    copies : int
        How many times it was copied (> 1: a copy was corrupt and made again).
    """

    path: str
    sha256: str
    nbytes: int
    seconds: float
    copies: int = 1


@dataclass
class Transfer:
    """What :func:`copy_verified` did.

    Attributes
    ----------
    src, dst : pathlib.Path
    files : list of FileCopy
        The files copied (empty when the destination was already complete and intact).
    recopied : list of str
        Files of an existing destination found corrupt or missing and copied again.
    seconds : float
        Wall time of the whole call.
    """

    src: Path
    dst: Path
    files: list[FileCopy] = field(default_factory=list)
    recopied: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def nbytes(self) -> int:
        """Bytes copied."""
        return sum(f.nbytes for f in self.files)

    @property
    def skipped(self) -> bool:
        """Whether nothing needed copying."""
        return not self.files


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_BUF):
            digest.update(chunk)
    return digest.hexdigest()


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative path, absolute path) of every file under ``root``, following links."""
    root = root.resolve()
    for here, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        if Path(here) == root and MANIFEST in files:
            files.remove(MANIFEST)
        for name in sorted(files):
            p = Path(here, name)
            yield p.relative_to(root).as_posix(), p


def _dirs(root: Path) -> list[str]:
    root = root.resolve()
    return sorted(Path(here).relative_to(root).as_posix()
                  for here, _, _ in os.walk(root, followlinks=True))


def source_stats(src: str | os.PathLike[str]) -> dict[str, list[int]]:
    """``{relative path: [size, mtime_ns]}`` of every file of a tree (no contents read)."""
    out = {}
    for rel, p in _walk(Path(src)):
        st = p.stat()
        out[rel] = [st.st_size, st.st_mtime_ns]
    return out


def tree_bytes(src: str | os.PathLike[str]) -> int:
    """Bytes of the files of a tree (or of one file), following links."""
    p = Path(src)
    if p.is_file():
        return p.stat().st_size
    return sum(size for size, _ in source_stats(p).values())


def read_manifest(dst: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of a staged tree, or None."""
    try:
        data = json.loads((Path(dst) / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "files" in data else None


def verify_tree(dst: str | os.PathLike[str]) -> list[str]:
    """Files of a staged tree whose contents no longer match its manifest.

    Parameters
    ----------
    dst : path-like
        A tree written by :func:`copy_verified`.

    Returns
    -------
    list of str
        Relative paths that are missing or whose SHA-256 differs (empty: intact).

    Raises
    ------
    StagingError
        If ``dst`` has no manifest.
    """
    manifest = read_manifest(dst)
    if manifest is None:
        raise StagingError(f"{dst}: no staging manifest ({MANIFEST})")
    bad = []
    for rel, info in manifest["files"].items():
        p = Path(dst, rel)
        if not p.is_file() or p.stat().st_size != info["nbytes"] or \
                sha256_file(p) != info["sha256"]:
            bad.append(rel)
    return bad


def _copy_one(src: Path, dst: Path, rel: str, copy_file: CopyFile, max_copies: int) -> FileCopy:
    t0 = time.perf_counter()
    want = sha256_file(src)
    for n in range(1, max_copies + 1):
        copy_file(str(src), str(dst))
        if sha256_file(dst) == want:
            return FileCopy(rel, want, dst.stat().st_size, time.perf_counter() - t0, n)
    raise StagingError(f"{src}: the copy at {dst} does not match its SHA-256 after "
                       f"{max_copies} copies")


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _clean_siblings(dst: Path) -> None:
    """Remove temporary trees left by a killed earlier staging of ``dst``."""
    for stale in dst.parent.glob(f".{dst.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in dst.parent.glob(f".{dst.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)


def copy_verified(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                  copy_file: CopyFile = shutil.copyfile, max_copies: int = 3) -> Transfer:
    """Copy a tree with verified SHA-256 checksums, atomically (temporary tree + rename).

    Parameters
    ----------
    src : path-like
        A directory (links followed) -- or a single file, copied as ``dst``.
    dst : path-like
        The destination; its parent is created. An existing ``dst`` staged from the same
        source (same files, sizes and modification times) is verified and repaired in
        place; any other existing ``dst`` is replaced.
    copy_file : callable, optional
        ``copy_file(src_path, dst_path)`` copies one file (default ``shutil.copyfile``).
    max_copies : int
        Copies of one file tried before giving up.

    Returns
    -------
    Transfer

    Raises
    ------
    StagingError
        If ``src`` is missing, or a file's copy never matches its checksum; ``dst`` is
        then left as it was.
    """
    src, dst = Path(src), Path(dst)
    t0 = time.perf_counter()
    if not src.exists():
        raise StagingError(f"{src}: nothing to stage (no such file or directory)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_file():
        tmp = dst.with_name(f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            one = _copy_one(src, tmp, dst.name, copy_file, max_copies)
            os.replace(tmp, dst)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return Transfer(src, dst, [one], [], time.perf_counter() - t0)
    _clean_siblings(dst)
    stats = source_stats(src)
    manifest = read_manifest(dst) if dst.is_dir() else None
    if manifest is not None and manifest.get("source") == stats:
        return _repair(src, dst, manifest, copy_file, max_copies, t0)
    tmp = dst.with_name(f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        for rel in _dirs(src):
            (tmp / rel).mkdir(parents=True, exist_ok=True)
        files = [_copy_one(p, tmp / rel, rel, copy_file, max_copies) for rel, p in _walk(src)]
        if source_stats(src) != stats:
            raise StagingError(f"{src}: changed while being staged")
        _atomic_json(tmp / MANIFEST, {
            "source": stats, "src": str(src.resolve()),
            "files": {f.path: {"sha256": f.sha256, "nbytes": f.nbytes} for f in files}})
        if dst.exists() or dst.is_symlink():
            old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(dst, old)
            os.rename(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Transfer(src, dst, files, [], time.perf_counter() - t0)


def _repair(src: Path, dst: Path, manifest: dict[str, Any], copy_file: CopyFile,
            max_copies: int, t0: float) -> Transfer:
    """Re-copy the files of an existing staged tree that fail their checksum."""
    bad = verify_tree(dst)
    files = []
    for rel in bad:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            one = _copy_one(src / rel, tmp, rel, copy_file, max_copies)
            if one.sha256 != manifest["files"][rel]["sha256"]:
                raise StagingError(f"{src / rel}: changed since it was staged to {dst}")
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        files.append(one)
    return Transfer(src, dst, files, bad, time.perf_counter() - t0)


__all__ = ["MANIFEST", "FileCopy", "StagingError", "Transfer", "copy_verified",
           "read_manifest", "sha256_file", "source_stats", "tree_bytes", "verify_tree"]
