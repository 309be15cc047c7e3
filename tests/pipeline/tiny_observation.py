"""The tiny simulated observation of the pipeline tests (a module of its own: test
modules import it by a name no other tests/ directory uses, unlike ``conftest``)."""

#: A tiny LOFAR-like observation: 4 stations (6 baselines), 20 integrations of 10 s,
#: 4 channels, a 100 Jy point source at the phase centre, gains and thermal noise.
TINY = {
    "name": "tiny", "lofar": {"n_core": 3, "n_remote": 1, "split_core": False},
    "n_chan": 4, "duration_s": 200, "integration_s": 10,
    "chunks": {"time": 2, "frequency": 4},
    "sky": {"preset": "none", "components": [
        {"name": "cal", "ra_deg": 123.4, "dec_deg": 48.2, "flux_jy": 100.0}]},
    "noise": {"enabled": True}, "seed": 3,
}
