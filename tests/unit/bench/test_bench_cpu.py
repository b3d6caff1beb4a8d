"""CPU accounting from /proc: parsing, process groups, listening sockets (on a fake /proc)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.cpu import (
    CLOCK_TICKS,
    CpuMeter,
    children_of,
    cpu_seconds,
    listening_inodes,
    listening_pid,
    parent_of,
    process_group_seconds,
)

pytestmark = pytest.mark.requirement("RS-BEN-01")


def fake_process(
    proc: Path, pid: int, *, ppid: int, ticks: tuple[int, int, int, int], name: str = "x"
) -> None:
    """A /proc/<pid>/stat with the given parent and utime, stime, cutime, cstime."""
    utime, stime, cutime, cstime = ticks
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime...
    fields = [
        "S", str(ppid), "1", "1", "0", "-1", "0", "0", "0", "0", "0",
        str(utime), str(stime), str(cutime), str(cstime), "20",
    ]  # fmt: skip
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "stat").write_text(f"{pid} ({name}) " + " ".join(fields) + "\n")


class TestStat:
    def test_user_and_system_ticks_are_seconds(self, tmp_path: Path) -> None:
        """utime + stime in clock ticks become seconds; reaped children only on request."""
        fake_process(tmp_path, 10, ppid=1, ticks=(300, 100, 50, 50))
        assert cpu_seconds(10, proc=tmp_path) == pytest.approx(400 / CLOCK_TICKS)
        assert cpu_seconds(10, children=True, proc=tmp_path) == pytest.approx(500 / CLOCK_TICKS)

    def test_command_names_with_spaces_and_parens_parse(self, tmp_path: Path) -> None:
        """A process name like ``postgres: (checkpointer) x`` does not shift the fields."""
        fake_process(tmp_path, 11, ppid=7, ticks=(5, 5, 0, 0), name="postgres: (a) b")
        assert parent_of(11, tmp_path) == 7
        assert cpu_seconds(11, proc=tmp_path) == pytest.approx(10 / CLOCK_TICKS)

    def test_a_gone_process_has_no_parent(self, tmp_path: Path) -> None:
        """Reading a pid that is not there answers None instead of raising."""
        assert parent_of(999, tmp_path) is None


class TestProcessGroup:
    def test_server_counts_itself_live_children_and_reaped_ones(self, tmp_path: Path) -> None:
        """A forking server's CPU = own + reaped children (cutime/cstime) + live children."""
        fake_process(tmp_path, 100, ppid=1, ticks=(10, 10, 30, 10))
        fake_process(tmp_path, 101, ppid=100, ticks=(20, 0, 0, 0))
        fake_process(tmp_path, 102, ppid=100, ticks=(5, 5, 0, 0))
        fake_process(tmp_path, 200, ppid=1, ticks=(1000, 0, 0, 0))
        (tmp_path / "self").mkdir()  # not a pid: ignored
        assert sorted(children_of(100, tmp_path)) == [101, 102]
        assert process_group_seconds(100, tmp_path) == pytest.approx(90 / CLOCK_TICKS)


class TestListening:
    def write_tcp(self, proc: Path, rows: list[tuple[str, str, str]]) -> None:
        """A /proc/net/tcp with (local address, state, inode) rows."""
        (proc / "net").mkdir(parents=True, exist_ok=True)
        lines = ["  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"]
        for index, (local, state, inode) in enumerate(rows):
            lines.append(
                f"   {index}: {local} 00000000:0000 {state} 00000000:00000000 00:00000000"
                f" 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0"
            )
        (proc / "net" / "tcp").write_text("\n".join(lines) + "\n")

    def test_only_listening_sockets_on_the_port_count(self, tmp_path: Path) -> None:
        """State 0A (LISTEN) on the port matches; established sockets and other ports do not."""
        rows = [("0100007F:2384", "0A", "555"), ("0100007F:2384", "01", "556")]
        self.write_tcp(tmp_path, [*rows, ("0100007F:1538", "0A", "557")])
        assert listening_inodes(0x2384, tmp_path) == {"555"}

    def test_the_process_holding_the_socket_is_found(self, tmp_path: Path) -> None:
        """The pid whose fd links to the listening socket's inode is the server."""
        self.write_tcp(tmp_path, [("0100007F:2384", "0A", "555")])
        for pid, target in ((40, "socket:[999]"), (41, "socket:[555]")):
            (tmp_path / str(pid) / "fd").mkdir(parents=True)
            os.symlink(target, tmp_path / str(pid) / "fd" / "3")
        assert listening_pid(0x2384, tmp_path) == 41

    def test_nobody_listening_is_none(self, tmp_path: Path) -> None:
        """No listening socket on the port: no pid (the service is not there)."""
        self.write_tcp(tmp_path, [])
        assert listening_pid(9092, tmp_path) is None


class TestCpuMeter:
    def test_spent_seconds_per_role(self) -> None:
        """Burning CPU in this process shows as a positive delta for its role."""
        meter = CpuMeter({"me": os.getpid()}, {})
        meter.start()
        sum(i * i for i in range(2_000_000))
        spent = meter.stop()
        assert spent["me"] is not None
        assert spent["me"] > 0

    def test_unreadable_process_is_not_measured(self) -> None:
        """A pid that does not exist reads as None, not as zero CPU."""
        meter = CpuMeter({"gone": 2**22 + 12345}, {"gone-group": 2**22 + 12346})
        meter.start()
        assert meter.stop() == {"gone": None, "gone-group": None}
