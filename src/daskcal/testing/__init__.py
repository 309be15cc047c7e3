"""Public factories of synthetic and real observations for tests, notebooks and benchmarks.

Names load lazily.
"""

from __future__ import annotations

from daskcal._lazy import lazy_exports

_EXPORTS = {
    "fetch_dataset": "realdata", "copy_dataset": "realdata", "DATASETS": "realdata",
    "RealDataError": "realdata",
    # simulator
    "SimulationConfig": "config", "simulate_observation": "simulate",
    "write_simulation": "simulate", "random_field": "simulate", "SimulationError": "simulate",
    "ArrayLayout": "arrays", "lofar_hba_layout": "arrays", "vla_layout": "arrays",
    "make_layout": "arrays", "GainModel": "corruptions", "TecScreen": "corruptions",
    "noise_sigma": "corruptions", "RFIPlan": "rfi",
    # small random observations and misbehaved inputs
    "random_observation": "factories", "misbehaved_not_an_ms": "factories",
    "misbehaved_ms_without_data": "factories", "misbehaved_truncated_zarr": "factories",
}


__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
