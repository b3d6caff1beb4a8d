"""The long-running commands as users run them: the demo end to end, the API as a process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import httpx
import pytest

from cli import api as cli_api
from cli import demo
from cli.main import main
from schemas.settings import SAMPLES_DIR, load_settings
from tests.conftest import REPO_ROOT
from tests.ports import free_port

# Bounded: the API starts (producer, database check, uvicorn) in a few seconds.
START_TIMEOUT_SECONDS = 60


@pytest.fixture
def services_env(
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    topic_prefix: str,
    pipeline_database_url: str,
    tmp_path: Path,
) -> dict[str, str]:
    """RADSTREAM_* variables of this test: its topics, groups, database and audit files."""
    env = {
        "RADSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RADSTREAM_TOPIC_PREFIX": topic_prefix,
        "RADSTREAM_CONSUMER_GROUP_PREFIX": f"rstest-{uuid.uuid4().hex[:8]}",
        "RADSTREAM_DATABASE_URL": pipeline_database_url,
        "RADSTREAM_AUDIT__SIGNING_KEY_FILE": str(tmp_path / "audit-key.pem"),
        "RADSTREAM_AUDIT__CHECKPOINT_FILE": str(tmp_path / "checkpoints.jsonl"),
        "RADSTREAM_OBSERVABILITY__METRICS_PORT": "0",
        "RADSTREAM_WORKER_DATA_DIR": str(tmp_path / "faust"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.mark.usefixtures("restored_logging")
def test_demo_shows_each_outcome_and_verifies_the_trail(
    services_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`radstream demo` (on two samples): a stored and a rejected row, an intact trail, exit 0."""
    samples = [SAMPLES_DIR / "raster" / "ct_64.png", SAMPLES_DIR / "bad" / "empty.dcm"]
    monkeypatch.setattr(demo, "sample_files", lambda: samples)
    assert main(["demo", "--timeout", "120"]) == 0
    captured = capsys.readouterr()
    rows = {line.split()[0]: line.split()[1] for line in captured.out.splitlines()[3:5]}
    assert rows == {"raster/ct_64.png": "stored", "bad/empty.dcm": "rejected"}
    assert "2 images: 1 stored with results, 1 rejected with a code, 0 unfinished" in captured.out
    assert "intact" in captured.out
    assert captured.err == ""

    assert main(["demo", "--timeout", "120", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [o["outcome"] for o in report["outcomes"]] == ["stored", "rejected"]
    assert all(store["ok"] for store in report["audit"])

    # Reading the topic trail trusts only pinned keys: pin the one the demo's agent created,
    # as an operator does after the first start.
    assert main(["audit", "public-key"]) == 0
    pinned = capsys.readouterr().out.strip()
    monkeypatch.setenv("RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS", json.dumps([pinned]))
    # The demo ran on a fresh prefix of its own: its trail is read there.
    configured = services_env["RADSTREAM_TOPIC_PREFIX"]
    assert report["topic_prefix"].startswith(f"{configured}demo-")
    assert f"to {configured}images.arrived" not in captured.out  # the first run's, too
    monkeypatch.setenv("RADSTREAM_TOPIC_PREFIX", report["topic_prefix"])
    stored = report["outcomes"][0]["event_id"]
    assert main(["audit", "show", "--event-id", stored, "--json"]) == 0
    trail = json.loads(capsys.readouterr().out)
    assert {record["object"]["event_id"] for record in trail} == {stored}
    assert main(["audit", "show", "--event-id", stored, "--source", "table"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[:2] == ["CHAIN/SEQ", "HAPPENED"]


def test_api_serves_until_sigterm(services_env: dict[str, str]) -> None:
    """`radstream api` starts, answers /readyz, and exits 0 on SIGTERM with nothing on stdout."""
    port = free_port()
    env = {**os.environ, **services_env, "RADSTREAM_API__PORT": str(port)}
    api = subprocess.Popen(
        [sys.executable, "-m", "cli", "api"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        status = None
        while status != 200:
            assert api.poll() is None, api.stderr.read() if api.stderr else ""
            assert time.monotonic() < deadline, "the API did not get ready in time"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                    status = answer.status
            except OSError:
                time.sleep(0.3)
    finally:
        api.send_signal(signal.SIGTERM)
        out, err = api.communicate(timeout=START_TIMEOUT_SECONDS)
    assert api.returncode == 0, err
    assert out == b""
    assert b"Traceback" not in err
    assert b"api_listening" in err  # the operator sees where it serves


async def test_api_in_process_serves_and_stops(services_env: dict[str, str]) -> None:
    """cli.api.serve: ready on /readyz once started, returns when stopped."""
    port = free_port()
    settings = load_settings(api={"port": port})
    stop, started = asyncio.Event(), asyncio.Event()
    server = asyncio.create_task(cli_api.serve(settings, stop, started.set))
    try:
        await asyncio.wait_for(started.wait(), START_TIMEOUT_SECONDS)
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{port}/readyz")
        assert answer.status_code == 200
    finally:
        stop.set()
        await asyncio.wait_for(server, START_TIMEOUT_SECONDS)


@pytest.mark.usefixtures("restored_logging")
def test_api_on_a_taken_port_is_one_line(
    services_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A port another process listens on: SETTINGS_INVALID naming the address, exit 3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("RADSTREAM_API__PORT", str(port))
        assert main(["api"]) == 3
    err = capfd.readouterr().err
    assert err.count("\n") == 1
    assert f"SETTINGS_INVALID: cannot listen on 127.0.0.1:{port}" in err
