"""The ``radstream`` command line: one module per command group (see :mod:`cli.main`).

The one thing this package does at import, before any of its modules loads numpy: one
OpenBLAS thread per process unless the operator chose otherwise. The stages' resize matmuls
are too small for a second BLAS thread to pay for its hand-over, and the stages decode and
infer in threads of their own already: with OpenBLAS's default pool the inference stage spent
twice the CPU per image (bench/README.md). OpenBLAS reads the variable once, when numpy loads
it, so it cannot be set later; ``tests/unit/cli/test_blas_threads.py`` proves it is set first.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
