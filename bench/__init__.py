"""Benchmarks of radstream and their recorded results (``make bench``; not part of CI).

``bench.run_pipeline`` is the end-to-end benchmark: the work limit (the pure functions in one
loop), the pipeline as users run it (one worker process per stage), and a plain aiokafka
baseline of the same stages, with latency percentiles and CPU seconds per image by process.
"""
