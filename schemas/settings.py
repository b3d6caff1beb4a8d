"""Every setting radstream reads, in one frozen object (env prefix ``RADSTREAM_``).

Nested groups use ``__``: ``RADSTREAM_VALIDATION__MAX_FILE_BYTES=1000``. Secrets are
:class:`~pydantic.SecretStr` and print masked. Build once with :func:`load_settings` at start-up
and pass the object down; nothing reads the environment anywhere else.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://radstream@127.0.0.1:5432/radstream"
DEFAULT_JWT_SECRET = "change-me-development-only-secret-32b!"  # noqa: S105 - refused outside dev  # nosec B105
# Every placeholder secret radstream ships (settings defaults, docker-compose.kafka.yml,
# deploy/kubernetes) contains one of these; production refuses any secret that does.
PLACEHOLDER_SECRET_MARKERS: Final = ("change-me", "changeme", "change_me")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The bundled sample images (samples/README.md): the default storage root and the demo's input.
SAMPLES_DIR = PROJECT_ROOT / "samples"
# Runtime state kept out of the work tree's tracked files (ignored by .gitignore).
STATE_DIR = PROJECT_ROOT / ".state"
ENV_PREFIX: Final = "RADSTREAM_"
ENV_NESTED_DELIMITER: Final = "__"
# One Kafka bootstrap server: a host name, IPv4 or bracketed IPv6 address, and an optional port.
_BOOTSTRAP_SERVER_RE: Final = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?$"
)
_MASK: Final = "**********"
# libpq takes a password in the URL's query or in a keyword/value string as well.
_PASSWORD_PARAMETER = re.compile(r"(?i)\b(password|sslpassword)=[^&\s]*")
RECEIVED_DICOM_DIR = "received-dicom"

Environment = Literal["development", "test", "production"]


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValidationSettings(_Group):
    """Limits the validation stage enforces before and while decoding."""

    max_file_bytes: int = Field(50 * 1024 * 1024, gt=0)
    min_dimension: int = Field(64, gt=0)
    max_dimension: int = Field(2048, gt=0)
    max_frames: int = Field(1, ge=1, description="multi-frame policy: frames accepted per image")
    allow_raw_dicom: bool = Field(False, description="accept DICOM without the Part 10 preamble")
    clinical_rules_file: Path = PROJECT_ROOT / "streams" / "validation" / "clinical_rules.yaml"
    file_settle_seconds: float = Field(
        0.0,
        ge=0,
        description="a file modified less than this ago is still being written: wait (0: off)",
    )

    @model_validator(mode="after")
    def _range_is_ordered(self) -> ValidationSettings:
        if self.min_dimension > self.max_dimension:
            raise ValueError("min_dimension must not exceed max_dimension")
        return self


class InferenceSettings(_Group):
    """Model registry location, runtime provider and micro-batching."""

    model_registry_dir: Path = PROJECT_ROOT / "model_registry"
    routing_rules_file: Path = PROJECT_ROOT / "model_registry" / "routing.yaml"
    onnx_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    batch_size: int = Field(8, ge=1, le=256)
    batch_wait_seconds: float = Field(
        0.0, ge=0, description="linger for a fuller batch (0: take what is there, adaptive)"
    )
    intra_op_threads: int = Field(1, ge=0)
    pixel_handoff_bytes: int = Field(
        256 * 1024 * 1024,
        ge=0,
        description="memory for pixels validation hands to inference in the same worker "
        "process (decode once; docs/performance.md); 0 disables the hand-off",
    )
    fuse_with_validation: bool = Field(
        True,
        description="a worker running validation and inference infers each accepted image in "
        "the batch that validated it (one hop less; docs/performance.md); false: inference "
        "consumes images.validated as a separate stage",
    )


class SinkSettings(_Group):
    """Batched PostgreSQL writes and how long to wait while the database is away."""

    batch_size: int = Field(200, ge=1)
    batch_wait_seconds: float = Field(
        0.0, ge=0, description="linger for a fuller batch (0: take what is there, adaptive)"
    )
    lifecycle_defer_seconds: float = Field(
        0.5,
        ge=0,
        le=10,
        description="an arrival's or validation's lifecycle step waits up to this long for "
        "a result or rejection to share its transaction (0: each is written at once); results "
        "and rejections never wait",
    )
    retry_initial_seconds: float = Field(0.2, gt=0)
    retry_max_seconds: float = Field(10.0, gt=0)
    retry_jitter: float = Field(0.2, ge=0, le=1, description="share of each delay randomised away")
    pool_size: int = Field(5, ge=1)


class RetrySettings(_Group):
    """Bounded exponential backoff for retryable errors inside agents."""

    max_attempts: int = Field(4, ge=1)
    initial_seconds: float = Field(0.1, gt=0)
    max_seconds: float = Field(5.0, gt=0)
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.2, ge=0, le=1, description="share of each delay randomised away")
    max_elapsed_seconds: float | None = Field(
        None, gt=0, description="give up once the next attempt would start later than this"
    )


class LoggingSettings(_Group):
    """structlog output and PHI masking."""

    format: Literal["json", "console"] = "json"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    mrn_patterns: tuple[str, ...] = (r"\bMRN[-:# ]?\d{5,10}\b",)
    mask_ip_addresses: bool = False


ED25519_PUBLIC_KEY_BYTES: Final = 32


class AuditSettings(_Group):
    """Hash chain checkpoints and their Ed25519 signing key."""

    signing_key_file: Path = STATE_DIR / "audit" / "signing_key.pem"
    checkpoint_file: Path = STATE_DIR / "audit" / "checkpoints.jsonl"
    checkpoint_every_records: int = Field(100, ge=1)
    checkpoint_every_seconds: float = Field(30.0, gt=0)
    batch_wait_seconds: float = Field(
        0.5,
        ge=0,
        le=5,
        description="gather source messages this long per audit transaction (the agent's "
        "fetches wait as long at the broker); no result waits for the audit trail",
    )
    trusted_public_keys: tuple[str, ...] = Field(
        (),
        description="the pinned Ed25519 verification keys (base64 of the raw 32-byte public "
        "key, as `radstream audit public-key` prints it); verify trusts only these, never the "
        "signing-key file. Keep a rotated-out key here while its signatures must verify",
    )

    @field_validator("trusted_public_keys")
    @classmethod
    def _raw_ed25519_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        """Each pinned key is the base64 of 32 raw bytes (an Ed25519 public key)."""
        for key in keys:
            try:
                raw = base64.b64decode(key.strip(), validate=True)
            except binascii.Error as exc:
                raise ValueError("a pinned audit key is not base64") from exc
            if len(raw) != ED25519_PUBLIC_KEY_BYTES:
                raise ValueError("a pinned audit key is not a raw 32-byte Ed25519 public key")
        return keys


class ApiSettings(_Group):
    """HTTP gateway: listening address, JWT trust, limits and CORS."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_algorithms: tuple[Literal["HS256", "RS256", "ES256"], ...] = ("HS256",)
    jwt_public_key_file: Path | None = None
    jwt_jwks_file: Path | None = Field(
        None, description="JWKS (RFC 7517) of the identity provider's RS256/ES256 keys, by kid"
    )
    jwt_audience: str = "radstream"
    jwt_issuer: str = "radstream-local"
    jwt_leeway_seconds: int = Field(10, ge=0, le=120)
    rate_limit_per_subject_per_minute: int = Field(120, ge=1)
    rate_limit_global_per_minute: int = Field(2000, ge=1)
    rate_limit_failed_auth_per_address_per_minute: int = Field(
        20,
        ge=1,
        description="failed authentications per client address, in their own buckets (never "
        "charged to the global budget)",
    )
    jwt_max_lifetime_seconds: int = Field(
        24 * 60 * 60, ge=60, description="longest exp - iat a token may have"
    )
    cors_allow_origins: tuple[str, ...] = ()
    max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0)
    max_batch_items: int = Field(50, ge=1)


# DICOM AE titles: 1-16 characters of the default repertoire, no backslash or control
# characters, not only spaces (PS3.5 6.2, VR AE). Kept to letters, digits and ._- here so a title
# is safe to log and to use as an event's ``source``.
AeTitle = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,16}$")]


class DicomPeer(_Group):
    """A DICOM application entity radstream sends to: AE title, host and port."""

    ae_title: AeTitle
    host: str = Field(pattern=r"^[A-Za-z0-9.:\[\]_-]{1,253}$")
    port: int = Field(ge=1, le=65535)


class DicomSettings(_Group):
    """The DICOM receiver (C-STORE SCP), the STOW-RS store and the result export (C-STORE SCU)."""

    ae_title: AeTitle = "RADSTREAM"
    host: str = Field("127.0.0.1", description="address the receiver listens on")
    port: int = Field(11112, ge=0, le=65535, description="receiver port (0: any free port)")
    allowed_calling_ae_titles: tuple[AeTitle, ...] = Field(
        (), description="calling AE titles allowed to associate; empty admits any"
    )
    storage_dir: Path | None = Field(
        None,
        description="where received instances are stored; inside a storage root "
        "(default: <first storage root>/received-dicom)",
    )
    publish_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="how long a C-STORE waits for the broker's confirmation before answering "
        "'out of resources' (keep it below the senders' DIMSE timeout, Orthanc's is 10 s)",
    )
    require_called_ae_title: bool = Field(
        False,
        description="refuse associations addressed to another AE title than ae_title, so a "
        "sender configured with the wrong title fails at once instead of being accepted "
        "(off by default, as in Orthanc's DicomCheckCalledAet)",
    )
    max_associations: int = Field(10, ge=1, le=100)
    network_timeout_seconds: float = Field(60.0, gt=0)
    dimse_timeout_seconds: float = Field(30.0, gt=0)
    export_destinations: tuple[DicomPeer, ...] = Field(
        (), description="where result reports are sent (JSON list of {ae_title, host, port})"
    )
    export_retry: RetrySettings = RetrySettings(
        max_attempts=5, initial_seconds=1.0, max_seconds=30.0, multiplier=2.0, jitter=0.2
    )


class KafkaSecuritySettings(_Group):
    """How every Kafka client authenticates and encrypts (``RADSTREAM_KAFKA__*``).

    The secure profile (``docs/security.md``) is ``SASL_SSL`` with SCRAM-SHA-512: the broker's
    certificate verified against ``ssl_cafile``, one SCRAM user per process role whose ACLs the
    broker enforces. The password is a secret: masked in ``radstream config``, never logged.
    """

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    sasl_username: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(None, description="CA certificates the broker's is checked by")
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="the client certificate's private key")
    ssl_check_hostname: bool = True
    manage_topics: bool = Field(
        True,
        description="workers create and correct the topics at start; off where their "
        "principal may not (the secure profile: the admin runs 'radstream topics ensure')",
    )

    @property
    def uses_sasl(self) -> bool:
        """Whether clients authenticate with SASL."""
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        """Whether connections are encrypted."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _complete(self) -> KafkaSecuritySettings:
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        if self.uses_sasl and not (self.sasl_username and password):
            raise ValueError("SASL needs sasl_username and a non-empty sasl_password")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        if not self.uses_tls and any((self.ssl_cafile, self.ssl_certfile)):
            raise ValueError("TLS files are set but security_protocol does not use TLS")
        return self


class DatabaseSettings(_Group):
    """PostgreSQL roles and TLS (docs/security.md#postgresql).

    ``database_url`` is the runtime role (workers, API); migrations run as the owner, audit
    verification as the read-only role, each defaulting to ``database_url`` (one role in
    development).
    """

    owner_url: SecretStr | None = Field(None, description="the role that runs Alembic")
    readonly_url: SecretStr | None = Field(
        None, description="a read-only role (audit verify and show)"
    )
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "prefer", description="libpq's modes; verify-full checks the CA and the host name"
    )
    sslrootcert: Path | None = Field(None, description="CA certificate(s) for verify-ca/full")
    sslcert: Path | None = Field(None, description="client certificate (optional)")
    sslkey: Path | None = Field(None, description="client key (with sslcert)")

    @model_validator(mode="after")
    def _verification_has_a_ca(self) -> DatabaseSettings:
        if self.sslmode in {"verify-ca", "verify-full"} and self.sslrootcert is None:
            raise ValueError(f"sslmode {self.sslmode} needs sslrootcert")
        if (self.sslcert is None) != (self.sslkey is None):
            raise ValueError("sslcert and sslkey go together")
        return self


class ObservabilitySettings(_Group):
    """Where workers serve /metrics and health, and how lag is judged."""

    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535)
    lag_window_seconds: float = Field(300.0, gt=0)


class WatchdogSettings(_Group):
    """When a worker gives up on itself, so that its supervisor restarts it (docs/operations.md)."""

    # A stage with lag, its broker (and database) reachable, and no progress this long: /livez
    # turns red and the worker exits non-zero. Far above the readiness bound (60 s).
    stall_seconds: float = Field(300.0, gt=0)
    # After SIGTERM/SIGINT the stages get this long to finish; then they are cancelled, and a
    # process still running 10 s later exits at once (exit status 70).
    shutdown_seconds: float = Field(30.0, gt=0)


class StudiesSettings(_Group):
    """Study completeness (quiet periods per modality) and study results (docs/studies.md)."""

    quiet_period_seconds: float = Field(
        60.0, gt=0, description="quiet period of a modality not listed below"
    )
    quiet_period_by_modality: dict[str, float] = Field(
        default_factory=lambda: {"CR": 15.0, "DX": 15.0, "CT": 30.0, "MR": 60.0, "US": 120.0},
        description="seconds without a new instance after which a series counts as complete",
    )
    sweep_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="how often quiet periods and pending results are checked"
    )
    analysis_timeout_seconds: float = Field(
        600.0,
        gt=0,
        description="after completion, how long to wait for every image's result before the "
        "study result lists the missing ones as failed",
    )
    urgent_acknowledge_seconds: float = Field(
        900.0,
        gt=0,
        description="an urgent finding unacknowledged for longer counts as overdue (alerted)",
    )
    batch_size: int = Field(200, ge=1)
    batch_wait_seconds: float = Field(0.05, ge=0)

    @field_validator("quiet_period_by_modality")
    @classmethod
    def _positive_periods(cls, value: dict[str, float]) -> dict[str, float]:
        if any(seconds <= 0 for seconds in value.values()):
            raise ValueError("quiet periods must be positive")
        return value


class Settings(BaseSettings):
    """radstream's whole configuration; see the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        frozen=True,
        extra="ignore",
    )

    environment: Environment = "development"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka: KafkaSecuritySettings = KafkaSecuritySettings()
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    topic_prefix: str = Field("radstream.", pattern=r"^[A-Za-z0-9._-]*$", max_length=100)
    consumer_group_prefix: str = Field("radstream", pattern=r"^[A-Za-z0-9._-]+$")
    storage_roots: Annotated[tuple[Path, ...], NoDecode] = (SAMPLES_DIR,)
    worker_web_port: int = Field(6066, ge=0, le=65535)
    worker_data_dir: Path = Field(
        STATE_DIR / "faust", description="Faust's data directory, one folder per consumer group"
    )

    validation: ValidationSettings = ValidationSettings()
    inference: InferenceSettings = InferenceSettings()
    sink: SinkSettings = SinkSettings()
    # Reading an image waits for slow writers (a router still copying a large file): attempts
    # 0, 0.5, 1.5, 3.5, 7.5, 15.5 s, then every 15 s, for up to two minutes before the DLQ.
    retry: RetrySettings = RetrySettings(
        max_attempts=12, initial_seconds=0.5, max_seconds=15.0, max_elapsed_seconds=120.0
    )
    logging: LoggingSettings = LoggingSettings()
    audit: AuditSettings = AuditSettings()
    api: ApiSettings = ApiSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    dicom: DicomSettings = DicomSettings()
    watchdog: WatchdogSettings = WatchdogSettings()
    database: DatabaseSettings = DatabaseSettings()
    studies: StudiesSettings = StudiesSettings()

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_servers(cls, value: str) -> str:
        """Refuse a bootstrap list the Kafka client could not parse (it would fail as a bug).

        ``host[:port]`` or ``[ipv6][:port]``, comma-separated; the port 1-65535.
        """
        servers = [server.strip() for server in value.split(",")]
        for server in servers:
            match = _BOOTSTRAP_SERVER_RE.match(server)
            if match is None:
                raise ValueError("expected host:port[,host:port...] (e.g. 127.0.0.1:9092)")
            if match["port"] is not None and not 1 <= int(match["port"]) <= 65535:
                raise ValueError(f"port {match['port']} is outside 1-65535")
        return ",".join(servers)

    @field_validator("storage_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        """Accept the documented comma-separated form as well as a sequence."""
        if isinstance(value, str):
            return tuple(Path(part.strip()) for part in value.split(",") if part.strip())
        return value

    @field_validator("storage_roots")
    @classmethod
    def _roots_absolute(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        if not value:
            raise ValueError("at least one storage root is required")
        return tuple(path.expanduser().resolve() for path in value)

    @model_validator(mode="after")
    def _enforce_non_default_secrets(self) -> Settings:
        """Refuse the development JWT secret, or a short one, outside development and test."""
        secret = self.api.jwt_secret.get_secret_value()
        if "HS256" in self.api.jwt_algorithms and len(secret.encode()) < 32:
            raise ValueError("RADSTREAM_API__JWT_SECRET must be at least 32 bytes for HS256")
        if self.environment == "production" and secret == DEFAULT_JWT_SECRET:
            raise ValueError("set RADSTREAM_API__JWT_SECRET: the development secret is refused")
        if self.environment == "production":
            for name, value in _secrets_of(self):
                if any(marker in value.lower() for marker in PLACEHOLDER_SECRET_MARKERS):
                    # The setting is named, its value never (it may be a real secret's prefix).
                    raise ValueError(
                        f"{ENV_PREFIX}{name.upper()} holds a shipped placeholder secret; "
                        "production refuses it: set a real one"
                    )
        return self

    @model_validator(mode="after")
    def _kafka_credentials_encrypted(self) -> Settings:
        """Outside development and test, SCRAM credentials never cross the network in clear."""
        kafka = self.kafka
        if self.environment == "production" and kafka.security_protocol == "SASL_PLAINTEXT":
            raise ValueError("kafka.security_protocol SASL_PLAINTEXT is refused: use SASL_SSL")
        if self.environment == "production" and kafka.uses_tls and not kafka.ssl_check_hostname:
            raise ValueError("kafka.ssl_check_hostname must stay on in production")
        return self

    @model_validator(mode="after")
    def _dicom_store_inside_a_root(self) -> Settings:
        """The stages read received instances only from inside the storage roots."""
        directory = self.dicom_storage_dir
        if not any(directory.is_relative_to(root) for root in self.storage_roots):
            raise ValueError("dicom.storage_dir must lie inside one of the storage roots")
        return self

    @property
    def dicom_storage_dir(self) -> Path:
        """Where the DICOM receiver and STOW-RS store instances (absolute)."""
        configured = self.dicom.storage_dir
        if configured is None:
            return self.storage_roots[0] / RECEIVED_DICOM_DIR
        return configured.expanduser().resolve()

    @property
    def owner_database_url(self) -> str:
        """The URL migrations run with (the owner role; ``database_url`` when unset)."""
        return (self.database.owner_url or self.database_url).get_secret_value()

    @property
    def readonly_database_url(self) -> str:
        """The URL read-only tools use (``database_url`` when unset)."""
        return (self.database.readonly_url or self.database_url).get_secret_value()

    @property
    def async_database_url(self) -> str:
        """The database URL with SQLAlchemy's asyncpg driver selected."""
        url = self.database_url.get_secret_value()
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        return url

    def masked(self) -> dict[str, Any]:
        """Effective settings as plain data with every secret masked (for ``radstream config``)."""
        data: dict[str, Any] = self.model_dump(mode="json")
        data["database_url"] = mask_url(self.database_url.get_secret_value())
        for name in ("owner_url", "readonly_url"):
            secret = getattr(self.database, name)
            if secret is not None:
                data["database"][name] = mask_url(secret.get_secret_value())
        data["api"]["jwt_secret"] = _MASK
        return data


def _secrets_of(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every ``SecretStr`` of a settings tree as (``group__field`` name, value)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            yield f"{prefix}{name}", value.get_secret_value()
        elif isinstance(value, BaseModel):
            yield from _secrets_of(value, f"{prefix}{name}{ENV_NESTED_DELIMITER}")


def mask_url(url: str) -> str:
    """Hide every password in a PostgreSQL URL or keyword/value connection string.

    The user info is masked up to the last ``@`` (a password may hold unescaped ``@``, ``/``
    or ``?``; masking a little too much is the safe side), and ``password=`` parameters too.
    """
    masked = _PASSWORD_PARAMETER.sub(lambda m: f"{m.group(1)}={_MASK}", url)
    scheme, sep, rest = masked.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at:
        return masked
    user, colon, _password = credentials.partition(":")
    return f"{scheme}://{user}{':' + _MASK if colon else ''}@{host}"


def env_name(location: tuple[int | str, ...]) -> str:
    """The environment variable of a setting: ``("api", "jwt_secret")`` is
    ``RADSTREAM_API__JWT_SECRET``; the empty location names the prefix."""
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part).upper() for part in location)


def describe_settings_error(error: ValidationError) -> str:
    """One line naming each invalid variable and why, never its value.

    pydantic's own message quotes the input (``input_value=...``), which may be a secret such
    as the JWT secret or a database password.
    """
    problems = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        location = tuple(item["loc"])
        problems.append(f"{env_name(location)}: {message}" if location else message)
    return "; ".join(problems)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)
