"""Every ``radstream`` command fails plainly: one line, the documented exit code, no secret.

Each command runs with the broker down, with the database down (the settings point at a closed
port: the shared services are never stopped), with bad arguments and with an invalid setting.
Each time stderr holds exactly one line ``radstream <command>: <ERROR_CODE>: ...``, the exit
status is the one documented for that code, and neither a traceback nor a secret is printed.
Commands that do not need the missing service still succeed, with nothing on stderr.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.dicom_demo import Orthanc
from cli.errors import EXIT_CODE_MEANINGS, ExitCode, exit_code_for
from cli.main import main, runnable_commands
from schemas.errors import ErrorCode
from schemas.settings import SAMPLES_DIR
from streams.audit.checkpoints import encode_public_key
from streams.audit.files import load_or_create_signing_key

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(SAMPLES_DIR / "dicom" / "ct_small.dcm")
MODEL_DIR = ROOT / "model_registry" / "lesion-detector" / "1.2.0"
# The registry changes the models commands would make are refused before anything is written:
# with the broker down their audit actions cannot be published (see BROKER_DOWN).
MODEL_CHANGES = (
    "models add",
    "models promote",
    "models shadow",
    "models canary",
    "models stage",
    "models retire",
)
SOME_ID = str(uuid.uuid4())
# Where `compliance report` writes here: outside the checkout, one file per test session.
REPORT_OUT = str(Path(tempfile.gettempdir()) / f"radstream-compliance-{SOME_ID}.md")
DB_PASSWORD = "Pw-Zq81/never-shown"
JWT_SECRET = "jwt-Zq81-canary-secret-never-printed!"
SHORT_SECRET = "short-Zq81-canary"
LINE = re.compile(r"^radstream( [a-z-]+)*: [A-Z_]+: [^\n]+\.\n$")
# Arguments that make each command do its work (and so reach the services it needs).
WORK: dict[str, list[str]] = {
    "demo": ["--timeout", "5"],
    "worker": [],
    "publish": [SAMPLE],
    "topics ensure": [],
    "db upgrade": [],
    "db downgrade": ["base"],
    "bootstrap": [],
    "api": [],
    "token": ["--subject", "ops", "--role", "admin"],
    "models list": [],
    "models show": ["lesion-detector"],
    "models scaffold": [str(MODEL_DIR / "model.onnx"), "--name", "x", "--version", "1.0.0"],
    "models add": [
        str(MODEL_DIR / "model.onnx"),
        "--manifest",
        str(MODEL_DIR / "manifest.yaml"),
        "--card",
        str(MODEL_DIR / "MODEL_CARD.md"),
        "--actor",
        "ops",
    ],
    "models promote": ["lesion-detector@1.2.0", "--actor", "ops"],
    "models shadow": ["lesion-detector@1.1.0", "--actor", "ops"],
    "models canary": ["lesion-detector@1.1.0", "--percent", "10", "--actor", "ops"],
    "models stage": ["lesion-detector@1.1.0", "--actor", "ops"],
    "models retire": ["lesion-detector@1.0.0", "--actor", "ops"],
    "models compare": ["lesion-detector", "--candidate", "1.1.0"],
    "audit verify": [],
    "audit show": ["--event-id", SOME_ID],
    "audit public-key": [],
    "dlq list": [],
    "dlq show": [SOME_ID],
    "dlq replay": ["--code", "TIMEOUT", "--actor", "ops"],
    "dlq purge": ["--code", "TIMEOUT", "--actor", "ops"],
    "lag": ["--interval", "0.1"],
    "config": [],
    "schemas export": [],
    "schemas check": [],
    "compliance report": ["--out", REPORT_OUT],
    "topics acls": [],
    "studies show": ["1.2.826.0.1.3680043.8.498.1"],
    "dicom listen": [],
    "dicom demo": ["--orthanc", "http://127.0.0.1:9", "--timeout", "5"],
}
# Writes the committed contract files: covered by its unit tests, not run here.
NOT_RUN = {"schemas export"}


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Case:
    """A command line and what it must end with."""

    argv: list[str]
    status: int
    code: ErrorCode | None = None

    @property
    def id(self) -> str:
        """A readable test id."""
        return " ".join(self.argv)[:60]


def work(command: str, *extra: str) -> list[str]:
    """The argv of ``command`` doing its work."""
    return [*command.split(), *WORK[command], *extra]


BROKER = ErrorCode.BROKER_UNAVAILABLE
DATABASE = ErrorCode.DATABASE_UNAVAILABLE
BROKER_DOWN = [
    *(
        Case(work(name), ExitCode.UNAVAILABLE, BROKER)
        for name in (
            "demo",
            "worker",
            "publish",
            "topics ensure",
            "bootstrap",
            "api",
            "audit verify",
            "audit show",
            "dlq list",
            "dlq show",
            "dlq replay",
            "dlq purge",
            "lag",
            "dicom listen",
            *MODEL_CHANGES,
        )
    ),
    Case(["worker", "--stages", "audit"], ExitCode.UNAVAILABLE, BROKER),
    Case(["audit", "verify", "--every", "60"], ExitCode.UNAVAILABLE, BROKER),
    Case(["lag", "--serve", "--interval", "60"], ExitCode.UNAVAILABLE, BROKER),
    # Commands that need no broker still work (the compliance report says the audit trail
    # could not be verified instead of failing).
    *(
        Case(work(name), ExitCode.OK)
        for name in (
            "db upgrade",
            "token",
            "models list",
            "models show",
            "models scaffold",
            "config",
            "schemas check",
            "audit public-key",
            "compliance report",
            "topics acls",
        )
    ),
]
DATABASE_DOWN = [
    *(
        Case(work(name), ExitCode.UNAVAILABLE, DATABASE)
        for name in (
            "demo",
            "worker",
            "db upgrade",
            "db downgrade",
            "bootstrap",
            "api",
            "models compare",
            "studies show",
            "dicom demo",
        )
    ),
    Case(["worker", "--stages", "results"], ExitCode.UNAVAILABLE, DATABASE),
    Case(["audit", "verify"], ExitCode.UNAVAILABLE, DATABASE),
    Case(
        ["audit", "show", "--source", "table", "--event-id", SOME_ID],
        ExitCode.UNAVAILABLE,
        DATABASE,
    ),
    # Commands that need no database still work (or find nothing: a clear not-found line).
    *(
        Case(work(name), ExitCode.OK)
        for name in (
            "topics ensure",
            "publish",
            "dlq list",
            "token",
            "models list",
            "config",
            "audit public-key",
            "compliance report",
            "topics acls",
        )
    ),
    Case(work("audit show"), ExitCode.NOT_FOUND, ErrorCode.RESOURCE_NOT_FOUND),
    Case(work("dlq show"), ExitCode.NOT_FOUND, ErrorCode.RESOURCE_NOT_FOUND),
]
USAGE = ErrorCode.REQUEST_INVALID
BAD_ARGUMENTS = [
    Case(["token", "--subject", "ops", "--role", "admin", "--ttl", "-5"], ExitCode.USAGE, USAGE),
    Case(["audit", "show"], ExitCode.USAGE, USAGE),
    Case(["audit", "show", "--event-id", "123"], ExitCode.USAGE, USAGE),
    Case(["publish", "/nonexistent.dcm"], ExitCode.USAGE, USAGE),
    Case(["publish", SAMPLE, "--model", "BAD MODEL"], ExitCode.USAGE, USAGE),
    Case(["db", "upgrade", "9999"], ExitCode.USAGE, USAGE),
    Case(["db", "downgrade"], ExitCode.USAGE, USAGE),
    Case(["worker", "--stages", "foo"], ExitCode.USAGE, USAGE),
    Case(["dlq", "list", "--limit", "-1"], ExitCode.USAGE, USAGE),
    Case(["dlq", "purge", "--actor", "ops"], ExitCode.USAGE, USAGE),
    Case(["dlq"], ExitCode.USAGE, USAGE),
    Case(["models"], ExitCode.USAGE, USAGE),
    Case(["models", "canary", "lesion-detector@1.1.0", "--percent", "0", "--actor", "o"], 2, USAGE),
    Case(["nope"], ExitCode.USAGE, USAGE),
    *(Case(work(name, "--no-such-option"), ExitCode.USAGE, USAGE) for name in sorted(WORK)),
]
SETTINGS_INVALID = [
    Case(work(name), ExitCode.SETTINGS, ErrorCode.SETTINGS_INVALID)
    for name in sorted(set(WORK) - NOT_RUN - {"schemas check"})
]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, topic_prefix: str, tmp_path: Path) -> Path:
    """RADSTREAM_* variables of this test: its topics, groups, audit key, canary secrets."""
    key = tmp_path / "audit-key.pem"
    pinned = encode_public_key(load_or_create_signing_key(key).public_key())
    for name, value in {
        "RADSTREAM_AUDIT__TRUSTED_PUBLIC_KEYS": json.dumps([pinned]),
        "RADSTREAM_TOPIC_PREFIX": topic_prefix,
        "RADSTREAM_CONSUMER_GROUP_PREFIX": f"rstest-{uuid.uuid4().hex[:8]}",
        "RADSTREAM_AUDIT__SIGNING_KEY_FILE": str(key),
        "RADSTREAM_AUDIT__CHECKPOINT_FILE": str(tmp_path / "checkpoints.jsonl"),
        "RADSTREAM_API__JWT_SECRET": JWT_SECRET,
        "RADSTREAM_OBSERVABILITY__METRICS_PORT": "0",
        "RADSTREAM_WORKER_DATA_DIR": str(tmp_path / "faust"),
    }.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def check(case: Case, status: int, out: str, err: str) -> None:
    """The case ended as documented: one line (or none), its code and status, no secret."""
    assert status == case.status, err
    assert case.status in EXIT_CODE_MEANINGS
    for text in (out, err):
        assert "Traceback" not in text
        for secret in (DB_PASSWORD, JWT_SECRET, SHORT_SECRET):
            assert secret not in text
    if case.code is None:
        assert err == ""
        return
    assert exit_code_for(case.code) == case.status
    assert LINE.match(err), err
    assert f": {case.code.value}: " in err


def run_all(cases: list[Case], capfd: pytest.CaptureFixture[str]) -> None:
    """Run each case in this process (as the console script would) and check it."""
    for case in cases:
        status = main(case.argv)
        out, err = capfd.readouterr()
        try:
            check(case, status, out, err)
        except AssertionError as failed:
            raise AssertionError(f"radstream {case.id}: {failed}") from None


@pytest.mark.usefixtures("restored_logging")
class TestEveryCommandFailsPlainly:
    def test_the_cases_cover_every_command(self) -> None:
        """No command escapes: each one runs with bad arguments and an invalid setting."""
        assert set(WORK) == set(runnable_commands())
        tried = {" ".join(c.argv[:2]) for c in BAD_ARGUMENTS} | {c.argv[0] for c in BAD_ARGUMENTS}
        assert set(WORK) <= tried
        settings_tried = {" ".join(c.argv[:2]) for c in SETTINGS_INVALID}
        settings_tried |= {c.argv[0] for c in SETTINGS_INVALID}
        assert set(WORK) - NOT_RUN - {"schemas check"} <= settings_tried

    def test_broker_down(
        self,
        environment: Path,
        database_url: str,
        monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        """Kafka unreachable: BROKER_UNAVAILABLE, exit 5, for every command that needs it."""
        monkeypatch.setenv("RADSTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{closed_port()}")
        monkeypatch.setenv("RADSTREAM_DATABASE_URL", database_url)
        run_all(BROKER_DOWN, capfd)

    def test_database_down(
        self,
        environment: Path,
        kafka_bootstrap: str,
        monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        """PostgreSQL unreachable: DATABASE_UNAVAILABLE, exit 5, for every command needing it."""

        async def orthanc_answers(url: str) -> Orthanc:
            return Orthanc(url, "ORTHANC", 4242)

        # `dicom demo` asks Orthanc before it migrates (an absent peer must leave the database
        # alone), and none runs at its URL here: stand in for its /system so the database fails.
        monkeypatch.setattr("cli.dicom.connect_orthanc", orthanc_answers)
        monkeypatch.setenv("RADSTREAM_KAFKA_BOOTSTRAP", kafka_bootstrap)
        monkeypatch.setenv(
            "RADSTREAM_DATABASE_URL",
            f"postgresql://radstream:{DB_PASSWORD}@127.0.0.1:{closed_port()}/radstream",
        )
        run_all(DATABASE_DOWN, capfd)

    def test_bad_arguments(
        self, environment: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A bad command line is refused while parsing (no service is up here): exit 2."""
        monkeypatch.setenv("RADSTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{closed_port()}")
        monkeypatch.setenv(
            "RADSTREAM_DATABASE_URL",
            f"postgresql://radstream:{DB_PASSWORD}@127.0.0.1:{closed_port()}/radstream",
        )
        run_all(BAD_ARGUMENTS, capfd)

    def test_invalid_setting(
        self, environment: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """An invalid secret is named, never printed: SETTINGS_INVALID, exit 3, everywhere."""
        monkeypatch.setenv("RADSTREAM_API__JWT_SECRET", SHORT_SECRET)
        run_all(SETTINGS_INVALID, capfd)


@pytest.mark.parametrize(
    ("argv", "broken", "status"),
    [
        (["topics", "ensure"], "broker", ExitCode.UNAVAILABLE),
        (["worker", "--stages", "validation"], "broker", ExitCode.UNAVAILABLE),
        (["db", "upgrade"], "database", ExitCode.UNAVAILABLE),
        (["token", "--subject", "ops", "--role", "admin", "--ttl", "-5"], "", ExitCode.USAGE),
        (["config"], "settings", ExitCode.SETTINGS),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else str(value),
)
def test_as_a_process(
    argv: list[str], broken: str, status: ExitCode, environment: Path, kafka_bootstrap: str
) -> None:
    """Run as users run it (a process of its own): still one line, no traceback at exit."""
    env = {**os.environ, "RADSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap}
    if broken == "broker":
        env["RADSTREAM_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{closed_port()}"
    if broken == "database":
        env["RADSTREAM_DATABASE_URL"] = (
            f"postgresql://radstream:{DB_PASSWORD}@127.0.0.1:{closed_port()}/radstream"
        )
    if broken == "settings":
        env["RADSTREAM_API__JWT_SECRET"] = SHORT_SECRET
    result = subprocess.run(
        [sys.executable, "-m", "cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    code = {
        ExitCode.UNAVAILABLE: BROKER if broken == "broker" else DATABASE,
        ExitCode.USAGE: USAGE,
        ExitCode.SETTINGS: ErrorCode.SETTINGS_INVALID,
    }[status]
    check(Case(argv, status, code), result.returncode, result.stdout, result.stderr)
