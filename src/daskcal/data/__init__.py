"""The visibility data model and its stores: MS (dask-ms) <-> xarray <-> zarr, UVFITS.

Public names load lazily (importing ``daskcal.data`` does not import casacore).
"""

from __future__ import annotations

from daskcal._lazy import lazy_exports

_EXPORTS = {
    # model
    "make_visibility_xds": "model", "make_antenna_xds": "model",
    "make_field_and_source_xds": "model", "make_partition": "model",
    "make_observation": "model", "add_data_group": "model", "partition_names": "model",
    "iter_partitions": "model", "antenna_xds_of": "model", "field_xds_of": "model",
    "antenna_indices": "model", "baseline_antenna_pairs": "model",
    "ms_time_to_unix": "model", "unix_to_ms_time": "model", "VIS_DIMS": "model",
    "STOKES_CODES": "model", "STOKES_NAMES": "model",
    # schema
    "SchemaError": "schema", "check_visibility_xds": "schema", "check_observation": "schema",
    "validate_observation": "schema", "validate_visibility_xds": "schema",
    # chunking
    "ChunkSpecError": "chunking", "parse_chunk_spec": "chunking", "resolve_chunks": "chunking",
    # stores
    "read_ms": "ms", "write_ms": "ms_write",
    "write_zarr": "zarr_store", "open_zarr": "zarr_store",
    "read_uvfits": "uvfits", "read_with_pyuvdata": "uvdata_import",
    "chunk_data_vars": "chunking",
    "open_observation": "open", "DataInputError": "open",
}


__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
