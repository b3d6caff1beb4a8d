"""The radstream command line: parsing, settings errors, and the commands that need no services."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import jwt
import pytest

import app
from schemas.settings import load_settings

pytestmark = pytest.mark.requirement("RS-CLI-01", "RS-CFG-01")


class TestParser:
    def test_every_documented_command_parses(self) -> None:
        """The commands the README lists exist with their arguments."""
        parser = app.build_parser()
        for argv in (
            ["config"],
            ["topics", "ensure"],
            ["publish", "a.dcm", "--model", "m"],
            ["worker", "--stages", "validation"],
            ["db", "upgrade"],
            ["bootstrap"],
            ["schemas", "check"],
            ["models"],
            ["audit", "verify"],
            ["demo"],
            ["audit", "show", "--event-id", "x"],
            ["token", "--subject", "s", "--role", "service"],
        ):
            assert callable(parser.parse_args(argv).func), argv

    def test_invalid_settings_exit_2(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bad environment is reported clearly, not with a traceback."""
        monkeypatch.setenv("RADSTREAM_VALIDATION__MIN_DIMENSION", "5000")
        assert app.main(["config"]) == 2
        assert "invalid settings" in capsys.readouterr().err


class TestCommandsWithoutServices:
    def test_config_prints_masked_settings(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`radstream config` prints JSON settings with the password masked."""
        monkeypatch.setenv("RADSTREAM_DATABASE_URL", "postgresql://u:topsecret@db:5432/x")
        assert app.main(["config"]) == 0
        out = capsys.readouterr().out
        assert "topsecret" not in out
        assert json.loads(out)["database_url"] == "postgresql://u:**********@db:5432/x"

    def test_schemas_check_passes_on_committed_files(self) -> None:
        """The committed contract files are current, so `schemas check` exits 0."""
        assert app.main(["schemas", "check"]) == 0

    def test_models_lists_registry(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`radstream models` lists the reference model's versions with one default."""
        assert app.main(["models"]) == 0
        lines = capsys.readouterr().out.splitlines()
        rows = [line for line in lines[1:] if line.startswith("lesion-detector")]
        assert len(rows) >= 2
        assert sum(" yes " in row for row in rows) == 1

    def test_token_is_accepted_by_the_configured_verifier(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`radstream token` signs a token with the required claims and the given role."""
        assert app.main(["token", "--subject", "dr-a", "--role", "clinician"]) == 0
        token = capsys.readouterr().out.strip()
        settings = load_settings()
        claims = jwt.decode(
            token,
            settings.api.jwt_secret.get_secret_value(),
            algorithms=["HS256"],
            audience=settings.api.jwt_audience,
            issuer=settings.api.jwt_issuer,
        )
        assert claims["sub"] == "dr-a"
        assert "clinician" in str(claims)

    def test_consumer_group_per_stage_set(self) -> None:
        """Each stage set is its own consumer group, independent of the order given."""
        settings = load_settings()
        assert app.consumer_group(settings, ["results", "validation"]) == (
            "radstream-results+validation"
        )
        assert app.consumer_group(settings, ["validation"]) != app.consumer_group(
            settings, ["inference"]
        )

    def test_demo_modality_hints(self) -> None:
        """Raster samples get the modality their name says; DICOM and others get none."""
        assert app.demo_modality_hint(Path("ct_256.png")) == "CT"
        assert app.demo_modality_hint(Path("us_rgb_320x240.jpg")) == "US"
        assert app.demo_modality_hint(Path("empty.dcm")) is None

    def test_sample_files_include_good_and_bad(self) -> None:
        """The bundled samples the demo publishes include DICOM, PNG, JPEG and bad inputs."""
        names = {p.suffix for p in app.sample_files()}
        assert {".dcm", ".png", ".jpg"} <= names
        assert any(p.parent.name == "bad" for p in app.sample_files())

    async def test_unknown_stage_is_refused(self) -> None:
        """A typo in --stages fails before anything starts."""
        with pytest.raises(ValueError, match="unknown stages"):
            await app.run_worker(load_settings(), ["validaton"], asyncio.Event())


class FakeAgent:
    records_written = 0


class TestWorkerSupervision:
    async def test_failed_background_stage_raises(self) -> None:
        """A dead audit stage ends the worker with an error instead of running unaudited."""

        async def dies() -> None:
            raise ConnectionError("broker gone")

        task = asyncio.create_task(dies())
        with pytest.raises(RuntimeError, match="stage failed"):
            await app._wait_for_stop_or_failure(asyncio.Event(), [task])

    async def test_stop_returns_normally(self) -> None:
        """Setting stop ends the wait without error while stages still run."""
        stop = asyncio.Event()
        forever = asyncio.create_task(asyncio.sleep(60))
        stop.set()
        await app._wait_for_stop_or_failure(stop, [forever])
        assert not forever.done()
        forever.cancel()

    async def test_audit_counts_exported_as_deltas(self) -> None:
        """Records the agent committed are added to the counter once each."""
        from prometheus_client import CollectorRegistry  # noqa: PLC0415

        from observability.metrics import Metrics  # noqa: PLC0415

        registry = CollectorRegistry()
        agent, stop = FakeAgent(), asyncio.Event()
        agent.records_written = 5
        task = asyncio.create_task(
            app._export_audit_counts(agent, Metrics(registry, process_collector=False), stop)  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.05)
        agent.records_written = 7
        stop.set()
        await task
        assert registry.get_sample_value("radstream_audit_records_appended_total") == 7.0


class TestBlasThreads:
    def test_default_is_one_thread(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Workers run OpenBLAS single-threaded unless told otherwise."""
        monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
        app.limit_blas_threads()
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"

    def test_operator_choice_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An operator's own OPENBLAS_NUM_THREADS is kept."""
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
        app.limit_blas_threads()
        assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
