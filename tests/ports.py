"""Free loopback ports for the peers and servers tests start (as ops/ports.sh picks them).

Never from the kernel's ephemeral range, which is where ``bind(("127.0.0.1", 0))`` draws: a port
there can be taken at any moment as the source port of some outgoing connection, and a client
that keeps reconnecting to it while its server is down (a broker outage test) can connect to
itself — TCP simultaneous open — and hold the port the restarted server needs.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

LOWEST = 20000
RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
ATTEMPTS = 200


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (Linux's default when unreadable)."""
    try:
        return int(RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port on 127.0.0.1 that nothing uses now, below the ephemeral range."""
    top = max(ephemeral_start(), LOWEST + 100)
    for _ in range(ATTEMPTS):
        port = LOWEST + secrets.randbelow(top - LOWEST)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOWEST} and {top}")
