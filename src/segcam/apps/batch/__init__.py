"""Batch mode: explanations for a whole data set, written to a Zarr store and a Parquet table."""
