"""Start ``radstream worker`` as its own process, as an operator or a supervisor would."""

from __future__ import annotations

import subprocess  # nosec B404 - starts radstream's own command line, as operators do
import sys
from pathlib import Path


def start_worker(stages: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``radstream worker --stages <stages>`` in its own session, appending to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(  # nosec B603 - fixed argv
            [sys.executable, "-m", "cli", "worker", "--stages", stages],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
