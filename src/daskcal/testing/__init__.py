"""Public factories of synthetic and real observations for tests, notebooks and benchmarks.

Names load lazily.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "fetch_dataset": "realdata", "copy_dataset": "realdata", "DATASETS": "realdata",
    "RealDataError": "realdata",
    # simulator
    "SimulationConfig": "config", "simulate_observation": "simulate",
    "write_simulation": "simulate", "random_field": "simulate", "SimulationError": "simulate",
    "ArrayLayout": "arrays", "lofar_hba_layout": "arrays", "vla_layout": "arrays",
    "make_layout": "arrays", "GainModel": "corruptions", "TecScreen": "corruptions",
    "noise_sigma": "corruptions", "RFIPlan": "rfi",
}


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = sorted(_EXPORTS)
