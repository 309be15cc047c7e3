"""Staging: every file's SHA-256 verified after the copy; corrupt copies are made again."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from daskcal.survey.staging import (
    MANIFEST,
    StagingError,
    copy_verified,
    read_manifest,
    verify_tree,
)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


@pytest.fixture
def tree(tmp_path, observation):
    """A copy of a tiny observation (a zarr directory tree) plus an empty directory."""
    src = tmp_path / "src.zarr"
    shutil.copytree(observation("s1"), src)
    (src / "empty").mkdir()
    return src


def test_copy_is_identical_and_checksums_are_those_of_the_source(tree, tmp_path):
    dst = tmp_path / "site" / "staged" / "obs.zarr"
    transfer = copy_verified(tree, dst)
    assert _files(dst) == _files(tree)
    assert (dst / "empty").is_dir()
    manifest = read_manifest(dst)
    expected = {p.relative_to(tree).as_posix(): _sha(p) for p in tree.rglob("*") if p.is_file()}
    assert {k: v["sha256"] for k, v in manifest["files"].items()} == expected
    assert {f.path: f.sha256 for f in transfer.files} == expected
    assert transfer.nbytes == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    assert all(f.copies == 1 for f in transfer.files)
    assert verify_tree(dst) == []
    # no temporary trees left next to it
    assert sorted(p.name for p in dst.parent.iterdir()) == ["obs.zarr"]


def test_corrupt_copy_in_flight_is_detected_and_copied_again(tree, tmp_path):
    target = sorted(p for p in tree.rglob("*") if p.is_file() and "/c/" in p.as_posix())[0]
    rel = target.relative_to(tree).as_posix()
    flipped = []

    def flaky_copy(src: str, dst: str) -> None:
        shutil.copyfile(src, dst)
        if src == str(target.resolve()) and not flipped:   # the first copy of one file rots
            data = bytearray(open(dst, "rb").read())
            data[len(data) // 2] ^= 0xFF
            open(dst, "wb").write(bytes(data))
            flipped.append(dst)

    dst = tmp_path / "dst.zarr"
    transfer = copy_verified(tree, dst, copy_file=flaky_copy)
    assert flipped, "the fault was not injected"
    assert {f.path: f.copies for f in transfer.files}[rel] == 2
    assert sum(f.copies for f in transfer.files) == len(transfer.files) + 1
    assert _files(dst) == _files(tree)


def test_copy_that_never_matches_fails_and_leaves_no_destination(tree, tmp_path):
    def rotten_copy(src: str, dst: str) -> None:
        shutil.copyfile(src, dst)
        with open(dst, "ab") as f:
            f.write(b"x")

    dst = tmp_path / "dst.zarr"
    with pytest.raises(StagingError, match="does not match its SHA-256 after 3 copies"):
        copy_verified(tree, dst, copy_file=rotten_copy)
    assert not dst.exists()
    assert list(tmp_path.glob(".dst.zarr.*")) == []


def test_corrupted_staged_copy_is_detected_and_repaired(tree, tmp_path):
    dst = tmp_path / "dst.zarr"
    copy_verified(tree, dst)
    chunks = sorted(p for p in dst.rglob("*") if p.is_file() and "/c/" in p.as_posix())
    bad, gone = chunks[0], chunks[1]
    data = bytearray(bad.read_bytes())
    data[0] ^= 0x01
    bad.write_bytes(bytes(data))
    gone.unlink()
    rel = sorted(p.relative_to(dst).as_posix() for p in (bad, gone))
    assert sorted(verify_tree(dst)) == rel

    again = copy_verified(tree, dst)
    assert sorted(again.recopied) == rel
    assert sorted(f.path for f in again.files) == rel       # only those two copied again
    assert _files(dst) == _files(tree)
    assert verify_tree(dst) == []
    # intact and unchanged: nothing copied
    assert copy_verified(tree, dst).skipped


def test_changed_source_is_staged_afresh(tree, tmp_path):
    dst = tmp_path / "dst.zarr"
    copy_verified(tree, dst)
    (tree / "extra.txt").write_text("new file")
    transfer = copy_verified(tree, dst)
    assert not transfer.skipped and (dst / "extra.txt").read_text() == "new file"
    assert _files(dst) == _files(tree)


def test_links_are_followed_and_single_files_copied(tree, tmp_path):
    products = tmp_path / "run" / "products"
    products.mkdir(parents=True)
    (products / "average.zarr").symlink_to(tree)
    dst = tmp_path / "out" / "products"
    copy_verified(products, dst)
    assert not (dst / "average.zarr").is_symlink()
    assert _files(dst / "average.zarr") == _files(tree)

    single = tmp_path / "provenance.json"
    single.write_text('{"steps": []}')
    transfer = copy_verified(single, tmp_path / "out" / "provenance.json")
    assert (tmp_path / "out" / "provenance.json").read_text() == '{"steps": []}'
    assert transfer.files[0].sha256 == _sha(single)
    with pytest.raises(StagingError, match="nothing to stage"):
        copy_verified(tmp_path / "missing", tmp_path / "x")
