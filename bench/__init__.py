"""Benchmarks of radstream and their recorded results (``make bench``; not part of CI).

``bench.run_pipeline`` is the end-to-end benchmark: the work limit (the pure functions in one
loop), the pipeline as users run it (one worker process per stage), and a plain aiokafka
baseline of the same stages, with latency percentiles and CPU seconds per image by process.
"""

# Before any benchmark module loads numpy: one OpenBLAS thread per process, as `radstream`
# runs (cli/__init__.py sets the default), so the work limit and both worker kinds compare fairly.
import cli  # noqa: F401
