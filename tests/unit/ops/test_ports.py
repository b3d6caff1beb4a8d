"""Ports for the peers ops/ and tests start: outside the ephemeral range, ready by listener."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.ports import LOWEST, ephemeral_start, free_port

SCRIPT = Path(__file__).resolve().parents[3] / "ops" / "ports.sh"


def shell(call: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}" && {call}'],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_free_port_is_below_the_ephemeral_range_and_bindable() -> None:
    port = free_port()
    assert LOWEST <= port < ephemeral_start()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))


def test_the_shell_picks_the_same_way() -> None:
    port = int(shell("free_port").stdout)
    assert LOWEST <= port < ephemeral_start()


def test_open_means_listening_and_taken_includes_connections() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert shell(f"port_open {port}").returncode == 1  # bound only: nothing to connect to
        server.listen()
        assert shell(f"port_open {port}").returncode == 0
        with socket.create_connection(("127.0.0.1", port)) as client:
            source = client.getsockname()[1]
            assert shell(f"port_taken {source}").returncode == 0
            assert shell(f"port_open {source}").returncode == 1
    assert shell(f"port_open {port}").returncode == 1


def test_a_listener_on_ipv6_counts() -> None:
    with socket.socket(socket.AF_INET6) as server:
        server.bind(("::1", 0))
        server.listen()
        assert shell(f"port_open {server.getsockname()[1]}").returncode == 0
