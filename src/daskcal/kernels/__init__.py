"""Numerical kernels: numba/numpy only, arrays in and arrays out, no dask, no xarray, no I/O.

Nothing in this package imports anything else from daskcal.
"""
