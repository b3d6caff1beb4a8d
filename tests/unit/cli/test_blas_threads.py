"""One OpenBLAS thread per process, set by the cli package before anything loads numpy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# Records OPENBLAS_NUM_THREADS at the moment numpy is first imported, then imports the command
# line the way the console script does.
PROBE = """
import os, sys
seen = []
def hook(event, args):
    if event == "import" and args[0] == "numpy" and not seen:
        seen.append(os.environ.get("OPENBLAS_NUM_THREADS"))
sys.addaudithook(hook)
import {module}
import numpy
print(seen[0] if seen else "numpy never imported")
"""


def numpy_saw(module: str, env: dict[str, str]) -> str:
    """What OPENBLAS_NUM_THREADS was when numpy loaded, importing ``module`` first."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return result.stdout.strip()


def clean_env() -> dict[str, str]:
    """This environment without an operator's OPENBLAS_NUM_THREADS."""
    return {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}


@pytest.mark.parametrize("module", ["cli.main", "cli.worker", "bench.aiokafka_baseline"])
def test_one_thread_is_set_before_numpy_loads(module: str) -> None:
    """The console script, the worker and the benchmark's baseline all load numpy after it."""
    assert numpy_saw(module, clean_env()) == "1"


def test_operator_choice_wins() -> None:
    """An operator's own OPENBLAS_NUM_THREADS is kept."""
    assert numpy_saw("cli.worker", {**clean_env(), "OPENBLAS_NUM_THREADS": "4"}) == "4"
