"""A throwaway private PostgreSQL cluster for outage tests (never the shared one on 5432).

Like ``ops/postgres.sh``, it runs the server as the ``postgres`` OS user when the tests run as
root (PostgreSQL refuses root), in a directory under /tmp that user can reach, on a free port,
with trust auth on 127.0.0.1 only. ``stop()`` is ``pg_ctl stop -m fast``: the same thing an
administrator's restart does to connected clients.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from sinks.migrate import upgrade_async
from tests.ports import free_port

SUPERUSER = "postgres"


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian layout, else PATH)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if candidates:
        return candidates[-1]
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        raise RuntimeError("PostgreSQL is not installed: run `bash ops/postgres.sh up` once")
    return Path(pg_ctl).resolve().parent


class PrivateCluster:
    """initdb, start, stop and remove one private cluster."""

    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="radstream-pg-outage-"))
        self.data = self.base / "data"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.base, "postgres", "postgres")

    @property
    def admin_url(self) -> str:
        """Superuser URL of the maintenance database."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd="/", timeout=60)

    def init(self) -> None:
        """Create the cluster (trust auth, listening on loopback only)."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "--no-sync")

    def start(self, *settings: str) -> None:
        """Start and wait until it accepts connections (at most 30 s).

        Args:
            settings: extra server settings, ``name=value`` each (``ssl=on``).
        """
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
        options += "".join(f" -c {setting}" for setting in settings)
        log = str(self.base / "server.log")
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "30"
        )

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: abort transactions, disconnect clients, shut down."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "30")

    def remove(self) -> None:
        """Stop if running and delete every file of the cluster."""
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def running_cluster(
    *settings: str, prepare: Callable[[PrivateCluster], None] | None = None
) -> Iterator[PrivateCluster]:
    """A started private cluster, removed on exit.

    Args:
        settings: extra server settings for :meth:`PrivateCluster.start`.
        prepare: called before ``initdb`` (e.g. to write TLS files into ``cluster.base``).
    """
    private = PrivateCluster()
    try:
        if prepare is not None:
            prepare(private)
        private.init()
        private.start(*settings)
        yield private
    finally:
        private.remove()


async def create_radstream_database(cluster: PrivateCluster) -> str:
    """Create the ``radstream`` role and database on ``cluster``, migrate it; its URL."""
    admin = await asyncpg.connect(cluster.admin_url)
    try:
        await admin.execute("CREATE ROLE radstream LOGIN CREATEDB")
        await admin.execute("CREATE DATABASE radstream OWNER radstream")
    finally:
        await admin.close()
    url = f"postgresql://radstream@127.0.0.1:{cluster.port}/radstream"
    await upgrade_async(url)
    return url
