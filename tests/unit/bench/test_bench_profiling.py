"""Profile summaries and the signal-controlled profile window of a worker."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from pyinstrument import Profiler

from bench.profiled import ProfileWindow, main
from bench.profiling import REPO_ROOT, package_of, summarise, text_report
from bench.workers import START_SIGNAL, STOP_SIGNAL

pytestmark = pytest.mark.requirement("RS-BEN-01")


def burn() -> None:
    """Some CPU in this file's own function."""
    for _ in range(3000):
        hashlib.sha256(b"x" * 50_000).digest()


class TestPackageOf:
    def test_owners_of_files(self) -> None:
        """Site-packages by name, the stdlib by module, our code by top folder."""
        site = "/venv/lib/python3.11/site-packages/faust/streams.py"
        stdlib = str(Path(sysconfig.get_paths()["stdlib"]) / "asyncio" / "base_events.py")
        assert package_of(site) == "faust"
        assert package_of(stdlib) == "stdlib:asyncio"
        assert package_of(str(REPO_ROOT / "streams" / "pipeline.py")) == "streams"
        assert package_of(str(REPO_ROOT / "app.py")) == "app"
        assert package_of("<built-in>") == "built-in"
        assert package_of("/somewhere/else.py") == "other"


class TestSummarise:
    def test_cpu_work_is_attributed_and_sleep_is_not(self) -> None:
        """Hashing shows up under its caller's package; the summary's shares stay within 1."""
        profiler = Profiler(interval=0.001)
        profiler.start()
        burn()
        time.sleep(0.05)
        summary = summarise(profiler.stop())
        assert summary["seconds"] > 0
        assert summary["process_cpu_seconds"] > 0
        assert "tests" in summary["by_package"]
        assert any("sha256" in f["function"] for f in summary["top_functions"])
        assert sum(summary["by_package"].values()) <= 1.01

    def test_text_report_is_a_call_tree(self) -> None:
        """The text profile names the profiled function."""
        profiler = Profiler(interval=0.001)
        profiler.start()
        burn()
        assert "burn" in text_report(profiler.stop())


class TestProfileWindow:
    def test_signals_start_and_stop_the_window(self, tmp_path: Path) -> None:
        """SIGUSR1 starts sampling, SIGUSR2 stops it and writes the summary and the tree."""
        # A second member's role: its ".2" is part of the name, not a suffix to replace.
        window = ProfileWindow(tmp_path / "profiles" / "validate+infer.2")
        previous = signal.getsignal(START_SIGNAL), signal.getsignal(STOP_SIGNAL)
        window.install()
        try:
            os.kill(os.getpid(), START_SIGNAL)
            burn()
            os.kill(os.getpid(), STOP_SIGNAL)
            os.kill(os.getpid(), STOP_SIGNAL)  # a second stop writes nothing new
        finally:
            signal.signal(START_SIGNAL, previous[0])
            signal.signal(STOP_SIGNAL, previous[1])
        summary = json.loads((tmp_path / "profiles" / "validate+infer.2.json").read_text())
        assert summary["seconds"] > 0
        assert "burn" in (tmp_path / "profiles" / "validate+infer.2.txt").read_text()
        assert window.written

    def test_window_never_opened_writes_nothing(self, tmp_path: Path) -> None:
        """Stopping a window that never started leaves no files."""
        window = ProfileWindow(tmp_path / "p")
        window.stop()
        assert not (tmp_path / "p.json").exists()


class TestMain:
    def test_usage_error(self) -> None:
        """Without '<stem> -- -m module' the wrapper refuses with exit code 2."""
        assert main(["stem", "app"]) == 2

    def test_module_exit_code_and_open_window_is_written(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The module runs as __main__ with its argv; its exit code comes back, and a window
        still open at exit is written."""
        (tmp_path / "bench_exit_module.py").write_text(
            "import os, signal, sys\n"
            "os.kill(os.getpid(), signal.SIGUSR1)\n"
            "sum(i * i for i in range(300_000))\n"
            "raise SystemExit(int(sys.argv[1]))\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(sys, "argv", ["pytest"])
        previous = signal.getsignal(START_SIGNAL), signal.getsignal(STOP_SIGNAL)
        try:
            code = main([str(tmp_path / "p"), "--", "-m", "bench_exit_module", "7"])
        finally:
            signal.signal(START_SIGNAL, previous[0])
            signal.signal(STOP_SIGNAL, previous[1])
        assert code == 7
        assert json.loads((tmp_path / "p.json").read_text())["seconds"] > 0
