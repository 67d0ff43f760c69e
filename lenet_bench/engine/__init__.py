"""The engine: plan runs as plain jobs, decide which to run, execute them (inline, on pinned local
workers or a Dask cluster) and hand each result to the recorder."""
