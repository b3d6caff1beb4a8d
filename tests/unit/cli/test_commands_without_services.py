"""The commands that need neither Kafka nor PostgreSQL: config, models, token, schemas, demo."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from cli import schemas as cli_schemas
from cli.demo import (
    FileOutcome,
    api_base_url,
    demo_modality_hint,
    demo_settings,
    outcome_row,
    reading_hints,
    refusal_of,
    sample_files,
)
from cli.dicom_demo import Orthanc, RoundTripOutcome
from cli.errors import CommandError
from cli.main import main
from schemas.errors import ErrorCode
from schemas.settings import SAMPLES_DIR, load_settings
from sinks.records import LifecycleEntry
from sinks.tables import LifecycleState
from streams.audit.verify import VerificationReport


class TestConfig:
    def test_prints_masked_settings(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`radstream config` prints JSON settings with the password masked."""
        monkeypatch.setenv("RADSTREAM_DATABASE_URL", "postgresql://u:topsecret@db:5432/x")
        assert main(["config"]) == 0
        out = capsys.readouterr().out
        assert "topsecret" not in out
        assert json.loads(out)["database_url"] == "postgresql://u:**********@db:5432/x"

    @pytest.mark.parametrize(
        ("variable", "value", "named"),
        [
            ("RADSTREAM_API__JWT_SECRET", "short-secret-Zq81", "RADSTREAM_API__JWT_SECRET"),
            ("RADSTREAM_SINK__POOL_SIZE", "0", "RADSTREAM_SINK__POOL_SIZE"),
            ("RADSTREAM_ENVIRONMENT", "prod-Zq81", "RADSTREAM_ENVIRONMENT"),
            ("RADSTREAM_VALIDATION__MIN_DIMENSION", "5000", "RADSTREAM_VALIDATION"),
        ],
    )
    def test_invalid_setting_is_one_line_without_its_value(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        variable: str,
        value: str,
        named: str,
    ) -> None:
        """A bad variable is named with the reason, never echoed (it may be a secret); exit 3."""
        monkeypatch.setenv(variable, value)
        assert main(["config"]) == 3
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert f"radstream config: SETTINGS_INVALID: {named}" in captured.err
        assert value not in captured.err


class TestModels:
    def test_lists_registry_with_one_default(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`radstream models list` lists the reference models' versions with their rollout."""
        assert main(["models", "list"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["NAME", "VERSION", "ROLLOUT", "RUNTIME", "STATUS", "DIGEST"]
        rows = [line.split() for line in lines[1:] if line.startswith("lesion-detector")]
        assert len(rows) >= 2
        assert [row[1] for row in rows if row[2] == "active"] == ["1.2.0"]

    def test_json(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--json lists the same models with their full digests."""
        assert main(["models", "list", "--json"]) == 0
        models = json.loads(capsys.readouterr().out)
        assert {m["name"] for m in models} == {"image-quality", "lesion-detector"}
        assert all(len(m["weights_sha256"]) == 64 for m in models if m["weights_sha256"])

    def test_empty_registry_is_a_failed_check(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A registry folder with no model fails the check (exit 1), naming the setting."""
        settings = load_settings(inference={"model_registry_dir": tmp_path})
        assert main(["models", "list"], settings=settings) == 1
        assert "RADSTREAM_INFERENCE__MODEL_REGISTRY_DIR" in capsys.readouterr().err


class TestToken:
    def test_is_accepted_by_the_configured_verifier(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`radstream token` signs a token with the required claims and the given role."""
        assert main(["token", "--subject", "dr-a", "--role", "clinician"]) == 0
        token = capsys.readouterr().out.strip()
        settings = load_settings()
        claims = jwt.decode(
            token,
            settings.api.jwt_secret.get_secret_value(),
            algorithms=["HS256"],
            audience=settings.api.jwt_audience,
            issuer=settings.api.jwt_issuer,
        )
        assert (claims["sub"], claims["roles"]) == ("dr-a", ["clinician"])

    def test_without_hs256_is_a_settings_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Local tokens are HS256: a deployment trusting only RS256 says so (exit 3)."""
        key = tmp_path / "public.pem"
        key.write_text("unused")
        settings = load_settings(api={"jwt_algorithms": ["RS256"], "jwt_public_key_file": key})
        argv = ["token", "--subject", "dr-a", "--role", "admin"]
        assert main(argv, settings=settings) == 3
        assert "SETTINGS_INVALID: local tokens are HS256" in capsys.readouterr().err


class TestSchemas:
    def test_check_passes_on_committed_files(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The committed contract files are current, so `schemas check` exits 0."""
        assert main(["schemas", "check", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"stale": []}


class TestDemoHelpers:
    def test_modality_hints(self) -> None:
        """Raster samples get the modality their name says; DICOM and others get none."""
        assert demo_modality_hint(Path("ct_256.png")) == "CT"
        assert demo_modality_hint(Path("us_rgb_320x240.jpg")) == "US"
        assert demo_modality_hint(Path("empty.dcm")) is None

    def test_demo_runs_on_a_fresh_prefix_and_groups(self) -> None:
        """Issue 17 F: the demo never shares the configured topics, groups or audit chain."""
        configured = load_settings(topic_prefix="site.", consumer_group_prefix="site")
        first, second = demo_settings(configured), demo_settings(configured)
        assert first.topic_prefix != configured.topic_prefix
        assert first.topic_prefix.startswith("site.demo-")
        assert first.consumer_group_prefix.startswith("site-demo-")
        assert first.topic_prefix != second.topic_prefix
        assert first.consumer_group_prefix != second.consumer_group_prefix
        assert demo_settings(configured, "r1").topic_prefix == "site.demo-r1."

    def test_sample_files_include_good_and_bad(self) -> None:
        """The bundled samples the demo publishes include DICOM, PNG, JPEG and bad inputs."""
        names = {p.suffix for p in sample_files()}
        assert {".dcm", ".png", ".jpg"} <= names
        assert any(p.parent.name == "bad" for p in sample_files())

    def test_what_runs_wrote_under_the_samples_is_not_a_sample(self, tmp_path: Path) -> None:
        """samples/ is the default storage root: instances the DICOM receiver stored and API
        uploads land under it, and a later demo must not publish them as bundled samples."""
        for relative in ("dicom/ct.dcm", "received-dicom/ab/cd/ef.dcm", "uploads/2026/x.png"):
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / relative).write_bytes(b"x")
        assert sample_files(tmp_path) == [tmp_path / "dicom" / "ct.dcm"]

    @pytest.mark.parametrize(
        ("states", "code", "decisions", "refusals", "expected"),
        [
            (
                ("arrived", "validated", "stored"),
                None,
                ("m@1: normal",),
                (),
                ("stored", "m@1: normal"),
            ),
            (
                ("arrived", "validated", "stored", "rejected"),
                "MODEL_INPUT_OUT_OF_DISTRIBUTION",
                ("m@1: normal",),
                ("n@2: MODEL_INPUT_OUT_OF_DISTRIBUTION",),
                ("stored", "m@1: normal; n@2: MODEL_INPUT_OUT_OF_DISTRIBUTION"),
            ),
            (("arrived", "rejected"), "IMAGE_EMPTY", (), (), ("rejected", "IMAGE_EMPTY")),
            (("arrived",), None, (), (), ("UNFINISHED", "arrived")),
            # The arrival is consumed apart from the outcomes: not finished until it is recorded.
            (("rejected",), "IMAGE_EMPTY", (), (), ("UNFINISHED", "rejected")),
            (
                ("validated", "stored"),
                None,
                ("m@1: normal",),
                (),
                ("UNFINISHED", "validated,stored"),
            ),
        ],
    )
    def test_outcome_rows(
        self,
        states: tuple[str, ...],
        code: str | None,
        decisions: tuple[str, ...],
        refusals: tuple[str, ...],
        expected: tuple[str, str],
    ) -> None:
        """Each row says stored (decisions and refusals), rejected (with code) or unfinished."""
        outcome = FileOutcome(
            SAMPLES_DIR / "bad" / "x.dcm",
            "e",
            states,
            code,
            decisions,
            refusals,
            expected=len(decisions) + len(refusals) or 1,
        )
        assert outcome_row(outcome) == ("bad/x.dcm", *expected)

    @pytest.mark.parametrize(
        ("name", "version", "expected"),
        [
            ("m", "1", "m@1: MODEL_LOAD_FAILED"),
            ("nosuch-model", None, "nosuch-model: MODEL_LOAD_FAILED"),
            (None, None, "MODEL_LOAD_FAILED"),
        ],
    )
    def test_refusals_name_the_model_as_it_was_asked_for(
        self, name: str | None, version: str | None, expected: str
    ) -> None:
        """A refusal reads model@version, the bare name without a version (never "@None")."""
        step = LifecycleEntry(
            event_id=uuid.uuid4(),
            state=LifecycleState.FAILED,
            at=datetime(2026, 12, 1, tzinfo=UTC),
            error_code="MODEL_LOAD_FAILED",
            stage="inference",
            model_name=name,
            model_version=version,
        )
        assert refusal_of(step) == expected

    def test_an_image_waits_for_every_routed_model(self) -> None:
        """An image routed to two models is not finished while only one has answered."""
        outcome = FileOutcome(
            SAMPLES_DIR / "x.dcm",
            "e",
            ("arrived", "validated", "stored"),
            None,
            ("m@1: ok",),
            expected=2,
        )
        assert not outcome.finished


class TestSchemasExport:
    def test_writes_every_file_and_counts_the_changed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """export writes each contract (creating folders) and says how many changed."""
        same, changed = tmp_path / "same.json", tmp_path / "new" / "changed.json"
        same.write_text("{}\n")
        monkeypatch.setattr(
            cli_schemas, "all_contract_files", lambda: {same: "{}\n", changed: '{"a": 1}\n'}
        )
        assert main(["schemas", "export"]) == 0
        assert capsys.readouterr().out == "wrote 2 contract files (1 changed)\n"
        assert changed.read_text() == '{"a": 1}\n'

    def test_check_lists_stale_files_and_fails(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A contract that differs from the models is listed, and the check exits 1."""
        stale = SAMPLES_DIR.parent / "schemas" / "asyncapi.json"
        monkeypatch.setattr(cli_schemas, "all_contract_files", lambda: {stale: "{}\n"})
        assert main(["schemas", "check"]) == 1
        captured = capsys.readouterr()
        assert captured.out.splitlines() == ["STALE FILE", "schemas/asyncapi.json"]
        assert "CHECK_FAILED: 1 contract file(s) differ from the models" in captured.err


class TestDemoSummary:
    @pytest.fixture
    def ran(self, monkeypatch: pytest.MonkeyPatch) -> str:
        """A demo run without services: one image stored, one rejected; its stored event id."""
        stored_id, rejected_id = str(uuid.uuid4()), str(uuid.uuid4())
        outcomes = [
            FileOutcome(SAMPLES_DIR / "ct_256.png", stored_id, ("arrived", "stored"), None, ("m",)),
            FileOutcome(SAMPLES_DIR / "bad.dcm", rejected_id, ("arrived", "rejected"), "X", ()),
        ]

        async def pipeline(*_args: object, **_kwargs: object) -> list[FileOutcome]:
            return outcomes

        async def verified(*_args: object) -> list[tuple[str, VerificationReport]]:
            return [("topic", VerificationReport(True, 4, 1, 0, 3, "0" * 64))]

        monkeypatch.setattr("cli.db.upgrade", lambda _settings: "head")
        monkeypatch.setattr("cli.demo.run_pipeline_on_files", pipeline)
        monkeypatch.setattr("cli.demo.verify_audit_trail", verified)
        monkeypatch.setattr("cli.demo.pinning_own_key", lambda settings: settings)
        return stored_id

    def test_ends_with_where_to_read_the_results(
        self, ran: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The summary's last lines (stdout) say how to read the results and the trail later."""
        wildcard = "0.0.0.0"  # noqa: S104 - the listen address the hint must not print
        settings = load_settings(topic_prefix="site.", api={"host": wildcard, "port": 8081})
        assert main(["demo"], settings=settings) == 0
        out = capsys.readouterr().out.splitlines()
        hints = out[out.index(next(line for line in out if line.startswith("read the results"))) :]
        assert len(hints) == 6
        assert "radstream token --subject demo-clinician --role clinician" in hints[2]
        assert hints[3].endswith("http://127.0.0.1:8081/results")
        assert hints[4].endswith(f"http://127.0.0.1:8081/events/{ran}")
        assert hints[5].startswith("  RADSTREAM_TOPIC_PREFIX=site.demo-")
        assert hints[5].endswith(f"radstream audit show --event-id {ran} --source table")

    def test_json_is_one_document_without_hints(
        self, ran: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--json stays one JSON document (it lists every event id and the topic prefix)."""
        assert main(["demo", "--json"], settings=load_settings()) == 0
        assert ran in {o["event_id"] for o in json.loads(capsys.readouterr().out)["outcomes"]}

    def test_the_advised_commands_parse(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The token is issued for the demo's requester; audit show takes the advised options."""
        assert main(["token", "--subject", "demo-clinician", "--role", "clinician"]) == 0
        argv = ["audit", "show", "--event-id", str(uuid.uuid4()), "--source", "table", "--help"]
        assert main(argv) == 0

    @pytest.mark.parametrize(
        ("host", "url"),
        [("10.0.0.5", "http://10.0.0.5:8080"), ("::", "http://127.0.0.1:8080"),
         ("::1", "http://[::1]:8080"), ("api.local", "http://api.local:8080")],
    )  # fmt: skip
    def test_api_url_is_one_a_client_can_reach(self, host: str, url: str) -> None:
        """A wildcard listen address is reached on the loopback; an IPv6 host is bracketed."""
        assert api_base_url(load_settings(api={"host": host})) == url

    def test_without_a_stored_image_the_id_is_a_placeholder(self) -> None:
        """No image stored: the commands name EVENT_ID for the user to fill in."""
        hints = reading_hints(load_settings(), None)
        assert hints[4].endswith("/events/EVENT_ID")


class TestDicomCommands:
    def test_export_without_destination_is_a_settings_error(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Asking for dicom-export with no destination fails in one line before connecting."""
        assert main(["worker", "--stages", "dicom-export"], settings=load_settings()) == 3
        err = capsys.readouterr().err
        assert "SETTINGS_INVALID: the dicom-export stage has no destination" in err
        assert "RADSTREAM_DICOM__EXPORT_DESTINATIONS" in err
        assert "Traceback" not in err

    @pytest.mark.parametrize("spelt", ["dicom_export", "validation,dicom-export,results_sink"])
    def test_worker_takes_the_dead_letters_spelling_of_a_stage(
        self, spelt: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--stages dicom_export (as `dlq list --stage` spells it) is the dicom-export stage."""
        assert main(["worker", "--stages", spelt], settings=load_settings()) == 3
        assert "SETTINGS_INVALID: the dicom-export stage has no destination" in (
            capsys.readouterr().err
        )

    def test_worker_help_lists_the_stages(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`worker --help` names every stage it can run, and the other spelling."""
        assert main(["worker", "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "from validation,inference,results,audit,studies,dicom-export" in out
        assert "(dicom_export, results_sink) are accepted" in out

    @pytest.mark.parametrize("url", ["file:///etc", "http://", "localhost:8042", "http://h:x/"])
    def test_dicom_demo_refuses_a_bad_url_before_touching_anything(
        self, url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A --orthanc that is not an http(s) URL is a usage error: no migration, no Orthanc."""
        touched: list[str] = []
        monkeypatch.setattr("cli.db.upgrade", lambda _settings: touched.append("db") or "head")
        monkeypatch.setattr("cli.dicom.connect_orthanc", lambda _url: touched.append("orthanc"))
        assert main(["dicom", "demo", "--orthanc", url], settings=load_settings()) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "REQUEST_INVALID: Invalid value for '--orthanc': not an http(s) URL" in err
        assert touched == []

    def test_dicom_demo_asks_orthanc_before_migrating(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An Orthanc that does not answer leaves the database as it was (exit 5, one line)."""
        touched: list[str] = []
        monkeypatch.setattr("cli.db.upgrade", lambda _settings: touched.append("db") or "head")

        async def absent(_url: str) -> Orthanc:
            raise CommandError(ErrorCode.DICOM_PEER_UNAVAILABLE, "Orthanc did not answer")

        monkeypatch.setattr("cli.dicom.connect_orthanc", absent)
        argv = ["dicom", "demo", "--orthanc", "http://127.0.0.1:9/"]
        assert main(argv, settings=load_settings()) == 5
        assert "DICOM_PEER_UNAVAILABLE: Orthanc did not answer" in capsys.readouterr().err
        assert touched == []

    def test_dicom_demo_timeout_advice_gives_commands_that_run(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Unfinished instances end in TIMEOUT, advising --verbose where it parses and dlq list."""
        unfinished = RoundTripOutcome(
            "ct_small.dcm", "1.2.3", FileOutcome(Path("ct_small.dcm"), "", (), None, ()), ()
        )

        async def connect(url: str) -> Orthanc:
            return Orthanc(url, "ORTHANC", 4242)

        async def round_trip(*_args: object, **_kwargs: object) -> list[RoundTripOutcome]:
            return [unfinished]

        monkeypatch.setattr("cli.db.upgrade", lambda _settings: "head")
        monkeypatch.setattr("cli.dicom.connect_orthanc", connect)
        monkeypatch.setattr("cli.dicom.demo_instances", lambda: [("ct_small.dcm", b"")])
        monkeypatch.setattr("cli.dicom.run_dicom_round_trip", round_trip)
        argv = ["dicom", "demo", "--orthanc", "http://127.0.0.1:9", "--timeout", "1"]
        assert main(argv, settings=load_settings()) == 5
        err = capsys.readouterr().err
        assert "TIMEOUT: 1 of 1 instances unfinished after 1 s." in err
        assert "'radstream --verbose dicom demo ...'" in err
        assert "'radstream dlq list'" in err
        # The forms advised are ones the parser accepts.
        assert main(["--verbose", "dicom", "demo", "--help"]) == 0
        assert main(["dlq", "list", "--help"]) == 0


class QuietBroker:
    """The listener's broker side without a broker: topics exist, the reader answers."""

    @classmethod
    def from_settings(cls, *_args: object, **_kwargs: object) -> QuietBroker:
        return cls()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def list_groups(self) -> list[str]:
        return []


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another process (here: this socket) already listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


class TestDicomListen:
    @pytest.fixture(autouse=True)
    def _no_broker(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def nothing(*_args: object, **_kwargs: object) -> object:
            return object()

        monkeypatch.setattr("app.ensure_topics", nothing)
        monkeypatch.setattr("app.open_publisher", nothing)
        monkeypatch.setattr("app.LagReader", QuietBroker)

    @pytest.mark.parametrize(
        ("busy", "named"),
        [
            ("dicom", "cannot listen for DICOM on 127.0.0.1:{port} (Address already in use)"),
            ("metrics", "cannot serve /livez, /readyz and /metrics on 127.0.0.1:{port}"),
        ],
    )
    def test_a_port_in_use_is_one_settings_line_not_a_bug(
        self,
        busy: str,
        named: str,
        busy_port: int,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The DICOM or the /metrics port held by another process: exit 3 (was 70, 'a bug')."""
        ports = {"dicom": 0, "metrics": 0, busy: busy_port}
        settings = load_settings(
            storage_roots=(tmp_path,),  # the storage folder is created at start: not in samples/
            dicom={"host": "127.0.0.1", "port": ports["dicom"]},
            observability={"metrics_host": "127.0.0.1", "metrics_port": ports["metrics"]},
        )
        assert main(["dicom", "listen"], settings=settings) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith("radstream dicom listen: SETTINGS_INVALID: ")
        assert named.format(port=busy_port) in err
        assert "stop the process that holds the port" in err

    def test_an_unwritable_storage_folder_is_one_settings_line_at_start(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A storage folder that cannot be created (its parent is a regular file) stops the
        start with exit 3 and one SETTINGS_INVALID line naming the folder's variable, before
        the broker or the port: it used to start and refuse every C-STORE with A700."""
        reached: list[str] = []

        async def listener(*_args: object, **_kwargs: object) -> None:
            reached.append("listening")  # without the check the service would run from here

        monkeypatch.setattr("app.run_dicom_listener", listener)
        (tmp_path / "a-file").write_bytes(b"")
        folder = tmp_path / "a-file" / "received-dicom"
        settings = load_settings(
            storage_roots=(tmp_path,),
            dicom={"host": "127.0.0.1", "port": 0, "storage_dir": folder},
            observability={"metrics_host": "127.0.0.1", "metrics_port": 0},
        )
        assert main(["dicom", "listen"], settings=settings) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith("radstream dicom listen: SETTINGS_INVALID: ")
        assert f"cannot store received DICOM in {folder} (Not a directory)" in err
        assert "RADSTREAM_DICOM__STORAGE_DIR" in err
        assert reached == []


class TestApiStart:
    def test_an_unwritable_dicom_storage_folder_stops_the_api_at_start(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """STOW-RS stores where the DICOM listener does: a folder that cannot be created is one
        SETTINGS_INVALID line (exit 3) before the broker is asked (nothing listens on port 1:
        without the check the API would end 5, broker unavailable, or store nothing later)."""
        (tmp_path / "a-file").write_bytes(b"")
        folder = tmp_path / "a-file" / "received-dicom"
        settings = load_settings(
            kafka_bootstrap="127.0.0.1:1",
            storage_roots=(tmp_path,),
            dicom={"storage_dir": folder},
        )
        assert main(["api"], settings=settings) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith("radstream api: SETTINGS_INVALID: ")
        assert f"cannot store received DICOM in {folder} (Not a directory)" in err


class TestTopicsAcls:
    def test_lists_each_principals_acls_for_the_prefixes(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The secure profile's ACLs for the configured prefixes, without a broker."""
        monkeypatch.setenv("RADSTREAM_TOPIC_PREFIX", "site-a.")
        monkeypatch.setenv("RADSTREAM_CONSUMER_GROUP_PREFIX", "site-a")
        assert main(["topics", "acls", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        audit_writers = {
            r["principal"]
            for r in rows
            if r["name"] == "site-a.audit.log" and r["operation"] == "WRITE"
        }
        assert audit_writers == {"User:audit"}
        assert {
            "principal": "User:validation",
            "resource": "GROUP",
            "name": "site-a-validation",
            "pattern": "LITERAL",
            "operation": "READ",
        } in rows

    def test_principals_one_a_line_for_the_ops_script(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """kafka.sh creates one SCRAM user per line."""
        assert main(["topics", "acls", "--principals"]) == 0
        assert capsys.readouterr().out.split() == [
            "router",
            "api",
            "validation",
            "inference",
            "results",
            "studies",
            "dicom-export",
            "audit",
        ]


class TestComplianceReport:
    def test_an_unwritable_out_path_is_a_usage_error_not_a_bug(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A directory that cannot hold the report: one line, exit 2 (was 70, 'a bug')."""
        out = "/proc/radstream-no-such-dir/Doe^Jane.md"
        assert main(["compliance", "report", "--out", out, "--audit-source", "none"]) == 2
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1
        assert "REQUEST_INVALID: cannot write the report to the --out path" in captured.err
        assert "Doe" not in captured.err
