"""Placement policy (pure functions): locality, capacity, staging cost, disabled sites."""

from __future__ import annotations

import pytest

from daskcal.survey.placement import SiteLoad, Waiting, choose_site, place, staging_seconds

MB = 1_000_000


def _sites(**overrides):
    base = {"ams": SiteLoad("ams", capacity=2, bandwidth=100 * MB),
            "jue": SiteLoad("jue", capacity=1, bandwidth=50 * MB),
            "poz": SiteLoad("poz", capacity=1, bandwidth=10 * MB)}
    base.update(overrides)
    return list(base.values())


def test_staging_seconds_is_bytes_over_bandwidth_plus_queue():
    site = SiteLoad("jue", capacity=1, bandwidth=50 * MB, queued_bytes=100 * MB)
    assert staging_seconds(Waiting("x", 200 * MB, "ams"), site) == pytest.approx(6.0)
    assert staging_seconds(Waiting("x", 200 * MB, "jue"), site) == 0.0
    assert staging_seconds(Waiting("x", 200 * MB, None), site) == pytest.approx(6.0)


def test_data_locality_wins_over_a_faster_link():
    # poz holds the data: no staging there, although its link is the slowest
    assert choose_site(Waiting("x", 500 * MB, "poz"), _sites()).name == "poz"
    assert place([Waiting("x", 500 * MB, "jue")], _sites()) == {"x": "jue"}


def test_full_home_site_stages_where_fastest():
    sites = _sites(jue=SiteLoad("jue", capacity=1, bandwidth=50 * MB, active=1))
    # jue (home) is full: ams moves 100 MB/s, poz 10 MB/s
    assert place([Waiting("x", 200 * MB, "jue")], sites) == {"x": "ams"}


def test_queue_of_a_site_counts_in_its_staging_cost():
    sites = _sites(ams=SiteLoad("ams", capacity=2, bandwidth=100 * MB, active=1,
                                queued_bytes=900 * MB))
    # ams: (900 + 100) / 100 = 10 s; jue: 100 / 50 = 2 s; poz: 10 s
    assert place([Waiting("x", 100 * MB, None)], sites) == {"x": "jue"}


def test_capacity_is_respected_and_the_rest_wait():
    waiting = [Waiting(f"o{i}", 10 * MB, "ams") for i in range(6)]
    out = place(waiting, _sites())
    per_site = {s: sum(1 for v in out.values() if v == s) for s in ("ams", "jue", "poz")}
    assert per_site == {"ams": 2, "jue": 1, "poz": 1}
    assert list(out) == ["o0", "o1", "o2", "o3"]   # in priority order; o4, o5 wait
    # the first two stay home; the next go where staging is fastest (jue before poz)
    assert out["o0"] == out["o1"] == "ams" and out["o2"] == "jue" and out["o3"] == "poz"


def test_placements_of_one_call_add_to_the_staging_queue():
    sites = [SiteLoad("fast", capacity=3, bandwidth=100 * MB),
             SiteLoad("slow", capacity=3, bandwidth=40 * MB)]
    out = place([Waiting(f"o{i}", 100 * MB, None) for i in range(3)], sites)
    # fast: 1 s, then 2 s (queue of 100 MB), then slow (2.5 s) vs fast (3 s) -> slow
    assert out == {"o0": "fast", "o1": "fast", "o2": "slow"}


def test_disabled_sites_take_nothing():
    sites = _sites(ams=SiteLoad("ams", capacity=2, bandwidth=100 * MB, disabled=True))
    out = place([Waiting("x", 10 * MB, "ams"), Waiting("y", 10 * MB, None)], sites)
    assert out == {"x": "jue", "y": "poz"}
    everything_off = [SiteLoad(s.name, s.capacity, s.bandwidth, disabled=True) for s in sites]
    assert place([Waiting("x", 1, "ams")], everything_off) == {}
    assert choose_site(Waiting("x", 1, None), everything_off) is None


def test_a_retry_avoids_the_site_it_failed_on_while_others_have_room():
    retry = Waiting("x", 10 * MB, "ams", avoid="ams")
    assert choose_site(retry, _sites()).name == "jue"
    # only the failed site has room: it is tried again rather than waiting forever
    full = _sites(jue=SiteLoad("jue", capacity=1, bandwidth=50 * MB, active=1),
                  poz=SiteLoad("poz", capacity=1, bandwidth=10 * MB, active=1))
    assert choose_site(retry, full).name == "ams"
