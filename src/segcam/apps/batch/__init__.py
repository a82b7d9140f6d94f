"""``segcam batch``: explanations for whole data sets into Zarr and Parquet (issue 11, in progress).

:mod:`.decode` reads files ahead in worker processes; :mod:`.targets` turns a prediction into
keyed targets; :mod:`.metrics` adds the evaluation suite's metrics to the rows; :mod:`.store`
and :mod:`.table` write the maps and rows so that a killed run resumes; :mod:`.runner` is the
local engine and :mod:`.ray_engine` the same work on a pool of Ray actors, both writing through
the runner's one writer; :mod:`.command` is the command line.
"""
