"""``python -m cli``: the ``radstream`` command from a checkout (the benchmark's workers)."""

from cli.main import run

run()
