"""CPU seconds of processes, read from ``/proc/<pid>/stat`` (Linux), and the services' pids.

The broker and PostgreSQL are found by the port they listen on (several brokers may run on a
shared machine; only the one at the bootstrap address serves the benchmark).

The broker and PostgreSQL are shared with everything else on the machine, so their CPU seconds
per image include whatever else used them during a phase; on a quiet machine that is little.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int, proc: Path = PROC) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may contain spaces)."""
    text = (proc / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, children: bool = False, proc: Path = PROC) -> float:
    """User + system CPU seconds of ``pid`` (all its threads); plus its reaped children's.

    Raises:
        FileNotFoundError / ProcessLookupError: the process is gone.
    """
    fields = _stat_fields(pid, proc)
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def parent_of(pid: int, proc: Path = PROC) -> int | None:
    """The parent pid of ``pid``, or None when it is gone."""
    try:
        return int(_stat_fields(pid, proc)[1])
    except (OSError, ValueError, IndexError):
        return None


def children_of(pid: int, proc: Path = PROC) -> list[int]:
    """The live child processes of ``pid``."""
    return [
        int(entry.name)
        for entry in proc.iterdir()
        if entry.name.isdigit() and parent_of(int(entry.name), proc) == pid
    ]


def process_group_seconds(root: int, proc: Path = PROC) -> float:
    """CPU seconds of a server that forks per connection (PostgreSQL): itself, its live
    children, and the children it already reaped (which the kernel adds to its ``cutime``)."""
    total = cpu_seconds(root, children=True, proc=proc)
    for child in children_of(root, proc):
        try:
            total += cpu_seconds(child, proc=proc)
        except OSError:
            continue  # exited between listing and reading: now in the parent's cutime
    return total


def listening_inodes(port: int, proc: Path = PROC) -> set[str]:
    """Socket inodes listening on TCP ``port`` (IPv4 and IPv6), from /proc/net/tcp*."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
            if len(fields) < 10 or fields[3] != "0A":
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listening_pid(port: int, proc: Path = PROC) -> int | None:
    """The process listening on TCP ``port`` (the broker, the postmaster), or None."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port, proc)}
    if not wanted:
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return int(entry.name)
        except OSError:
            continue  # gone, or not ours to read
    return None


class CpuMeter:
    """CPU seconds of named processes between :meth:`start` and :meth:`stop`.

    ``pids`` maps a role to a pid; ``groups`` maps a role to a forking server's root pid.
    A process that cannot be read counts as ``None`` (not measured) rather than zero.
    """

    def __init__(self, pids: Mapping[str, int], groups: Mapping[str, int]) -> None:
        self._pids = dict(pids)
        self._groups = dict(groups)
        self._before: dict[str, float | None] = {}

    def _read(self) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        for role, pid in self._pids.items():
            try:
                values[role] = cpu_seconds(pid)
            except OSError:
                values[role] = None
        for role, pid in self._groups.items():
            try:
                values[role] = process_group_seconds(pid)
            except OSError:
                values[role] = None
        return values

    def start(self) -> None:
        """Take the first reading."""
        self._before = self._read()

    def stop(self) -> dict[str, float | None]:
        """CPU seconds per role since :meth:`start`."""
        after = self._read()
        spent: dict[str, float | None] = {}
        for role, before in self._before.items():
            now = after.get(role)
            spent[role] = None if before is None or now is None else round(now - before, 3)
        return spent
