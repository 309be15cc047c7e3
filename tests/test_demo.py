"""``daskcal demo``: simulated LOFAR calibrator + target through the three LOFAR recipes.

The truth is the simulator's: source fluxes (intrinsic, at the image frequency) and
positions, and the noise. What the demo must show: the sources where they are with their
fluxes, and a facet-calibrated image better than the direction-independent one.
"""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_demo_recovers_the_sky_and_facets_beat_di(tmp_path):
    from daskcal.demo import N_BRIGHTEST, run_demo

    lines: list[str] = []
    result = run_demo(tmp_path / "demo", site="threads", echo=lines.append)
    report = json.loads((tmp_path / "demo" / "demo-report.json").read_text())
    assert report == json.loads(json.dumps(result.report))
    rows = report["brightest"]
    assert len(rows) == N_BRIGHTEST
    # measured here: the brightest three's peaks and CLEAN fluxes 0.978-1.000 of the truth,
    # the faintest of the ten (0.6-0.8 Jy) 0.85-0.93 (the ionosphere's direction-dependent
    # phases are not removed completely after two phase-only facet rounds: the issue's
    # 1 % is not reached yet), positions within 0.75 pixel (30" pixels, 3' beam)
    for r in rows[:3]:
        assert 0.97 < r["ratio"] < 1.02, r
        assert 0.97 < r["clean_ratio"] < 1.02, r
    for r in rows:
        assert 0.80 < r["ratio"] < 1.05, r
        assert 0.80 < r["clean_ratio"] < 1.05, r
        assert r["offset_px"] < 1.0, r
    # measured: 4.6 mJy/beam against 18.1 mJy/beam
    assert report["facet_residual_rms_jy"] < 0.5 * report["di_residual_rms_jy"]
    for run in ("calibrator", "target", "facet"):
        assert (tmp_path / "demo" / run / "weblog" / "index.html").is_file()
        prov = json.loads((tmp_path / "demo" / run / "provenance.json").read_text())
        assert prov["status"] == "complete"
    assert any(p.endswith("facet_image_2-target_0-restored-pbcor.fits") for p in
               (str(x) for x in (tmp_path / "demo" / "facet" / "products").glob("*.fits")))
    assert any("facet-calibrated" in line for line in lines)
