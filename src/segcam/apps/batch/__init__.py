"""``segcam batch``: explanations for whole data sets into Zarr and Parquet (issue 11, in progress).

:mod:`.decode` reads files ahead in worker processes; :mod:`.targets` turns a prediction into
keyed targets; :mod:`.store` and :mod:`.table` write the maps and rows so that a killed run
resumes; :mod:`.runner` is the local engine; :mod:`.command` its command line.  The Ray engine
and the benchmarks are still to come.
"""
