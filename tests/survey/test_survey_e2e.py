"""A survey of five observations over three sites: two local schedulers and the real SLURM.

Marked ``slurm``: skipped with the reason when no SLURM cluster is up (fails instead with
``DASKCAL_REQUIRE_SLURM=1``). The products returned to the output directory must equal,
value by value, those of a plain threaded ``run_recipe`` of the same observation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from daskcal.survey.config import load_survey
from daskcal.survey.db import Database
from daskcal.survey.driver import SurveyDriver, summary_table
from daskcal.survey.staging import MANIFEST, read_manifest

pytestmark = pytest.mark.slurm


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_survey_over_three_sites(write_survey, local_sites, slurm_site, site_entry, observation,
                                 reference, compare, tmp_path):
    sites = {"a": site_entry(local_sites["a"].scheduler_address, tmp_path / "a"),
             "b": site_entry(local_sites["b"].scheduler_address, tmp_path / "b"),
             "c": slurm_site(tmp_path / "c")}
    plan = {"o1": ("s1", "a"), "o2": ("s2", "b"), "o3": ("s3", "c"), "o4": ("s1", "a"),
            "o5": ("s2", None)}
    survey = load_survey(write_survey(sites, [
        {"name": name, "inputs": {"target": str(observation(key))}, "location": where}
        for name, (key, where) in plan.items()]))
    lines: list[str] = []
    rows = {r["name"]: r for r in SurveyDriver(survey, echo=lines.append, poll_s=0.2).run()}

    db = Database(survey.database)
    table = summary_table(db)
    assert {r["state"] for r in rows.values()} == {"done"}, table
    assert {r["attempt"] for r in rows.values()} == {1}, table
    assert {r["resumes"] for r in rows.values()} == {0}, table
    # the first three went to the sites holding their data (each site has one slot)
    ran_on = {name: r["last_site"] or r["site"] for name, r in rows.items()}
    placed = {e["observation"]: e["site"] for e in db.events() if e["kind"] == "placed"}
    assert {k: placed[k] for k in ("o1", "o2", "o3")} == {"o1": "a", "o2": "b", "o3": "c"}
    for name, (key, _) in plan.items():
        out = survey.output / name
        assert compare(reference(key), out / "products" / "average.zarr") == [], name
        prov = json.loads((out / "provenance.json").read_text())
        assert prov["status"] == "complete"
        assert Path(prov["site"]).stem == placed[name]
        assert (out / "weblog" / "index.html").is_file()
        assert read_manifest(out / "products") is not None
        # staged only where the data was not: checksums are those of the source files
        staged_in = [t for t in db.transfers(name) if t["direction"] == "in"]
        if placed[name] == plan[name][1]:
            assert staged_in == [], name
        else:
            src = observation(key)
            expected = {p.relative_to(src).as_posix(): _sha(p) for p in src.rglob("*")
                        if p.is_file()}
            root = survey.data_root(placed[name]) / "staged" / name / f"target-{src.name}"
            got = {Path(t["file"]).relative_to(root).as_posix(): t["sha256"]
                   for t in staged_in}
            assert got == expected, name
            assert (root / MANIFEST).is_file()
    # the SLURM site really ran in a batch job (its workers' logs exist)
    assert list((tmp_path / "slurm-logs").glob("*.err")), "no SLURM job logs"
    assert {s["name"]: s["health"] for s in db.sites()} == {"a": "ok", "b": "ok", "c": "ok"}
    db.close()
    print("\n" + table)
    assert ran_on  # (for the table above)
