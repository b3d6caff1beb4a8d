"""Debian's Prometheus as a private test peer: free port, state under .state/, shipped rules.

It scrapes the given targets every second and evaluates ``ops/prometheus/alerts.yml`` every
second, so a test can watch the shipped alert rules react to a live pipeline. Installed by
``ops/tools.sh`` (Debian package ``prometheus``, which also brings promtool).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[1]
ALERT_RULES = REPO / "ops" / "prometheus" / "alerts.yml"
# Bounded: Prometheus is ready in about a second here; the bound only stops a hung test.
START_TIMEOUT_SECONDS = 30.0


class PrometheusPeer:
    """One private Prometheus server scraping ``jobs`` (job name -> ``host:port`` targets)."""

    def __init__(self, jobs: Mapping[str, Sequence[str]]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: run `make tools` (ops/tools.sh)")
        self.binary = binary
        self.port = free_port()
        self.base = REPO / ".state" / "prometheus" / uuid.uuid4().hex[:12]
        self.base.mkdir(parents=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERT_RULES)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in jobs.items()
            ],
        }
        self.config = self.base / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until ``/-/ready`` answers (bounded)."""
        log = (self.base / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited: see {self.base / 'prometheus.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready")

    def get(self, path: str, **params: str) -> Any:
        """GET an API path; the ``data`` of a successful answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as answer:  # noqa: S310
            body = json.load(answer)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus answered {body.get('status')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=expr)["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Every pending or firing alert."""
        alerts: list[dict[str, Any]] = self.get("/api/v1/alerts")["alerts"]
        return alerts

    def stop(self) -> None:
        """Stop the server and remove its state."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=15)
        shutil.rmtree(self.base, ignore_errors=True)
