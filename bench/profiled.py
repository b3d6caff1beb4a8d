"""Run a worker module with pyinstrument armed: ``python -m bench.profiled <output-stem> --
-m app worker --stages inference``.

Profiling covers only a window the benchmark chooses: SIGUSR1 starts the profiler, SIGUSR2
stops it and writes ``<output-stem>.json`` (the summary from :func:`bench.profiling.summarise`)
and ``<output-stem>.txt`` (pyinstrument's call tree). Start-up (imports, connecting, joining the
group) is therefore not in the profile, only the measured load. pyinstrument samples the main
thread: work a stage sends to ``asyncio.to_thread`` is seen as the event loop waiting.
"""

from __future__ import annotations

import json
import runpy
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from pyinstrument import Profiler

from bench.profiling import summarise, text_report
from bench.workers import START_SIGNAL, STOP_SIGNAL


class ProfileWindow:
    """A pyinstrument profiler started and stopped by signals, writing its files on stop."""

    def __init__(self, stem: Path, interval: float = 0.001) -> None:
        self.stem = stem
        self.profiler = Profiler(interval=interval)
        self.written = False

    def start(self, _signum: int = 0, _frame: FrameType | None = None) -> None:
        """Begin sampling (idempotent)."""
        if not self.profiler.is_running:
            self.profiler.start()

    def stop(self, _signum: int = 0, _frame: FrameType | None = None) -> None:
        """Stop sampling and write the profile files (once)."""
        if not self.profiler.is_running or self.written:
            return
        session = self.profiler.stop()
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        # Appended, not with_suffix: a role's ".2" (a second member) is not a suffix to replace.
        folder, name = self.stem.parent, self.stem.name
        (folder / f"{name}.json").write_text(json.dumps(summarise(session), indent=2) + "\n")
        (folder / f"{name}.txt").write_text(text_report(session))
        self.written = True

    def install(self) -> None:
        """Route the start and stop signals to this window."""
        signal.signal(START_SIGNAL, self.start)
        signal.signal(STOP_SIGNAL, self.stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``-m <module> <args>`` with a signal-controlled profile window."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 4 or args[1] != "--" or args[2] != "-m":
        print("usage: python -m bench.profiled <output-stem> -- -m <module> [args...]")
        return 2
    window = ProfileWindow(Path(args[0]))
    window.install()
    module, module_args = args[3], args[4:]
    sys.argv = [module, *module_args]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        window.stop()  # a window still open at exit is written too
    return code


if __name__ == "__main__":
    sys.exit(main())
