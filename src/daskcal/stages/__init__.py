"""Processing stages: xarray.Dataset in, xarray.Dataset out, lazily (one module per stage)."""
