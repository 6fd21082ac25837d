"""runyard's settings: one validated model, read from RUNYARD_* variables and passed in, never global."""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from runyard.errors import ConfigError

MIN_SECRET_KEY_BYTES = 32  # HS256 wants at least 256 bits of key (RFC 7518 §3.2)
#: The least Shannon entropy a key's own byte frequencies may show, in bits per byte. Random keys sit well above:
#: secrets.token_urlsafe(32) (43 characters of 64) gives about 4.8 (the lowest of 100,000 draws: 4.26),
#: `openssl rand -hex 32` about 3.8 (lowest 3.34); a key of fewer than 8 distinct bytes cannot reach 3.
#: (3.5 would refuse one in five `openssl rand -hex 16` keys; 3.0 refuses about one in 10,000 of those.)
MIN_SECRET_KEY_BITS_PER_BYTE = 3.0
MAX_HTTP_PROCESSES = 64
MAKE_A_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


POSTGRES_SCHEMES = ("postgresql+psycopg://", "postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    """Whether a store or warehouse URL names a PostgreSQL database."""
    return url.lower().startswith(POSTGRES_SCHEMES)


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the host's count), at most
    MAX_HTTP_PROCESSES: one Python process answers one request at a time, so `serve` answers from this many."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    return max(1, min(count, MAX_HTTP_PROCESSES))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNYARD_", extra="ignore")

    home: Path = Field(default=Path(".runyard"), description="Holds the default store, warehouse, staging and key")
    database_url: str | None = Field(default=None, description="Runs and tasks; default SQLite under home")
    warehouse_url: str | None = Field(default=None, description="Default: a DuckDB folder under home")
    staging_url: str | None = Field(
        default=None,
        description="Default: a staging folder under home; s3://bucket/prefix with the credentials botocore finds: "
        "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, ~/.aws or an instance role",
    )
    # Default false, so a run's staged files go once its Data Load committed: they are a second copy of source data
    # (often personal data) that nothing reads again (a retry of the Data Load finds the load record and loads
    # nothing), and on S3 they cost storage. A run that may still be retried keeps them (see runyard.engine.load).
    staging_keep_after_load: bool = Field(
        default=False,
        description="Keep a run's staged files (Parquet parts, manifests) after its Data Load committed, for "
        "inspection; by default they are removed then. Runs that did not load (failed, canceled: a retry reuses "
        "their extractions) keep them until RUNYARD_STAGING_RETENTION_DAYS",
    )
    staging_retention_days: float = Field(
        default=7.0,
        ge=0,
        description="The scheduler removes the staged files of runs that ended more than this many days ago (every "
        "account, whatever the run's outcome; never those of a run still going, nor those it reuses); 0 keeps them",
    )
    secret_key: SecretStr | None = Field(default=None, description="Signs tokens; generated under home if unset")
    admin_password: SecretStr | None = Field(default=None, description="The first administrator's password")

    worker_concurrency: int = Field(default=4, ge=1, le=256)
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    metrics_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often a worker writes the live metrics (records, rate, latency) of its running tasks",
    )
    poll_seconds: float = Field(default=1.0, gt=0, description="How often an idle worker looks for work")
    sweep_seconds: float = Field(default=2.0, gt=0, description="How often the scheduler sweeps leases")
    scheduler_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the scheduler checks that it leads (or takes over) and looks for schedule ticks due",
    )
    cancel_timeout_seconds: float = Field(default=120.0, gt=0)
    task_max_seconds: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="A task attempt running longer fails and frees its slot (streams run until canceled)",
    )
    warehouse_lock_wait_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long a task waits, trying again, for the account's DuckDB warehouse file while another "
        "process holds it, before the task fails naming that process",
    )
    token_ttl_seconds: int = Field(default=600, ge=30, le=86_400, description="Lifetime of an access token (JWT)")
    query_token_auth: bool = Field(
        default=True,
        description="Accept ?Authorization=Bearer%20<token> (spec 001); such URLs leak into proxies and history",
    )
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30, description="How long a web UI login lasts")
    cookie_secure: bool = Field(default=False, description="Send the UI's cookies over HTTPS only (behind TLS)")
    sign_in_failures_per_login: int = Field(
        default=10,
        ge=1,
        le=10_000,
        description="Failed sign-ins a login may have within RUNYARD_SIGN_IN_WINDOW_SECONDS before sign-ins with it "
        "answer 429 (a successful sign-in clears the login's count)",
    )
    sign_in_failures_per_address: int = Field(
        default=50,
        ge=1,
        le=100_000,
        description="Failed sign-ins one client address may have within RUNYARD_SIGN_IN_WINDOW_SECONDS before its "
        "sign-ins answer 429",
    )
    sign_in_window_seconds: float = Field(
        default=900.0, gt=0, le=86_400, description="The sliding window failed sign-ins are counted in"
    )
    trust_forwarded_for: bool = Field(
        default=False,
        description="Take a sign-in's client address from the last X-Forwarded-For entry (set it only behind a "
        "reverse proxy that sets that header); otherwise the socket peer's",
    )
    launch_rejected_per_minute: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="Rejected runs an operation may get per minute; past it a launch while a run is active answers "
        "429 and records nothing",
    )
    sql_queries_per_minute: int = Field(
        default=120,
        ge=1,
        le=100_000,
        description="SQL Explorer queries an account may run per minute (API, UI and CLI together); past it a query "
        "answers 429 and does not run",
    )
    exports_per_minute: int = Field(
        default=30,
        ge=1,
        le=100_000,
        description="Exports (spec 004's page 1, the Exports page's Start) an account may start per minute; past it "
        "a start answers 429 and starts nothing (later pages of a started export are not counted)",
    )
    stalled_after_seconds: float = Field(
        default=300.0, gt=0, description="A running task that received no record for this long shows as Stalled"
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default=["public"],
        description="Where sources, CDC databases and webhooks may be: host names, *.domains, IPs, CIDR networks, or "
        "'public' (comma-separated)",
    )
    storage_roots: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Local folders storage-to-storage operations may read and write, comma-separated; default: "
        "<home>/files. Object stores (s3://) are reached with the credentials of the environment",
    )
    sql_row_limit: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="SQL Explorer: the most rows a query returns (API, UI, CLI and CSV); a request may ask for fewer",
    )
    sql_timeout_seconds: float = Field(
        default=30.0, gt=0, description="SQL Explorer: a query running longer than this is stopped"
    )
    # 2 MiB: the largest body a route accepts is a SQL Explorer query of 100,000 characters, which JSON with
    # ASCII escapes (json.dumps's default: \ud83d\ude42 for one emoji) makes up to 1.2 MB; spec 003's bodies and
    # the UI's forms stop at 64 KiB.
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=64 * 1024,
        le=1024 * 1024 * 1024,
        description="The largest request body accepted, in bytes; a larger one answers 413 before it is read",
    )
    http_processes: int = Field(
        default_factory=usable_cpus,
        ge=1,
        le=MAX_HTTP_PROCESSES,
        description="Processes `runyard serve` answers HTTP from (default: the CPUs this process may use, one more "
        f"with a PostgreSQL store, at most {MAX_HTTP_PROCESSES}); the first also runs the workers and scheduler, the "
        "others only serve, and a launch they answer wakes the workers at once (NOTIFY on PostgreSQL, a local socket "
        "on SQLite)",
    )

    export_completed_seconds: float = Field(
        default=300.0, ge=0, description="How long an export whose pages are all cached stays in the completed queue"
    )
    export_draining_seconds: float = Field(
        default=5.0, ge=0, description="How long an export stays in the draining queue before its pages are deleted"
    )
    export_stale_after_seconds: float = Field(
        default=240.0, ge=0, description="An active export without activity for this long moves to the stale queue"
    )
    export_stale_seconds: float = Field(
        default=300.0, ge=0, description="How long a stale export may come back to active before it drains"
    )
    export_first_page_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long page 1 of an export waits to be cached before answering 'not yet cached' with its token",
    )
    alert_min_runs: int = Field(
        default=5,
        ge=2,
        le=1_000,
        description="Alerts: the successful runs an operation (per run type) needs before its durations and row "
        "counts have a normal range, and before any alert is raised from one",
    )
    alert_history_runs: int = Field(
        default=20,
        ge=2,
        le=1_000,
        description="Alerts: the newest successful runs a normal range is taken from (at least RUNYARD_ALERT_MIN_RUNS)",
    )
    alert_spread: float = Field(
        default=3.0,
        gt=0,
        le=100,
        description="Alerts: how many robust deviations (scaled MAD) from the median make a duration or row count "
        "unusual",
    )
    alert_seconds: float = Field(
        default=5.0, gt=0, description="Alerts: how often the leading scheduler evaluates them"
    )
    alert_overdue_grace_seconds: float = Field(
        default=600.0,
        ge=0,
        description="Alerts: how long past its expected interval (from its schedule or its history) a source without "
        "a successful run is overdue",
    )

    # Notifications (alerts sent to webhooks and by email)
    public_url: str | None = Field(
        default=None, description="runyard's own address, for links in notifications (default: links are paths)"
    )
    notify_seconds: float = Field(default=5.0, gt=0, description="How often notifications that are due are sent")
    smtp_host: str | None = Field(default=None, description="The SMTP server email notifications go through")
    smtp_port: int = Field(default=25, ge=1, le=65_535)
    smtp_from: str = Field(default="runyard@localhost", description="The From address of email notifications")
    smtp_user: str | None = Field(default=None, description="SMTP login, if the server wants one")
    smtp_password: SecretStr | None = Field(default=None)
    smtp_tls: Literal["none", "starttls", "ssl"] = Field(
        default="none", description="none, starttls (upgrade a plain connection) or ssl (TLS from the start)"
    )
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_more_http_process_on_postgres(self) -> Settings:
        """With a PostgreSQL store a process waits on round trips to the server, leaving its CPU to another: the
        default answers from one process more than the CPUs (docs/benchmarks.md, API latency, measures both)."""
        if "http_processes" not in self.model_fields_set and self.store_is_postgres:
            self.http_processes = min(self.http_processes + 1, MAX_HTTP_PROCESSES)
        return self

    @field_validator("allowed_hosts", "storage_roots", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    def model_post_init(self, _context: object) -> None:
        if self.alert_history_runs < self.alert_min_runs:
            raise ConfigError(
                f"must be at least RUNYARD_ALERT_MIN_RUNS ({self.alert_min_runs})", field="RUNYARD_ALERT_HISTORY_RUNS"
            )
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ConfigError(
                f"must be shorter than RUNYARD_LEASE_SECONDS ({self.lease_seconds})",
                field="RUNYARD_HEARTBEAT_SECONDS",
            )

    @property
    def store_is_postgres(self) -> bool:
        return self.database_url is not None and is_postgres_url(self.database_url)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'runyard.db').resolve()}"

    @property
    def resolved_warehouse_url(self) -> str:
        """The warehouse: by default a folder of DuckDB files (one per account) under home."""
        return self.warehouse_url or str((self.home / "warehouse").resolve())

    @property
    def resolved_staging_url(self) -> str:
        return self.staging_url or str((self.home / "staging").resolve())

    @property
    def resolved_storage_roots(self) -> tuple[Path, ...]:
        """The local folders storage-to-storage may touch (symlinks resolved)."""
        roots = self.storage_roots or [str(self.home / "files")]
        return tuple(Path(root).expanduser().resolve() for root in roots)

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    def signing_key(self) -> bytes:
        """The configured key, or one generated once and kept in home with mode 0600."""
        if self.secret_key is not None:
            key = self.secret_key.get_secret_value().encode()
            if len(key) < MIN_SECRET_KEY_BYTES:
                raise ConfigError(
                    f"is too short: use at least {MIN_SECRET_KEY_BYTES} random bytes", field="RUNYARD_SECRET_KEY"
                )
            weakness = key_weakness(key)
            if weakness is not None:
                raise ConfigError(f"{weakness}; make one with: {MAKE_A_KEY}", field="RUNYARD_SECRET_KEY")
            return key
        return _load_or_create_key(self.home / "secret.key")


def key_weakness(key: bytes) -> str | None:
    """Why `key` cannot be random, or None. Two tests that a random key never fails in practice: its bytes are
    spread enough (MIN_SECRET_KEY_BITS_PER_BYTE), and it is not one shorter string repeated ("secret" * 6)."""
    counts = Counter(key)
    bits = sum(n / len(key) * math.log2(len(key) / n) for n in counts.values())
    if bits < MIN_SECRET_KEY_BITS_PER_BYTE:
        return (
            f"has too little entropy to be random ({len(counts)} distinct bytes, {bits:.1f} bits per byte; "
            f"at least {MIN_SECRET_KEY_BITS_PER_BYTE:.1f} wanted)"
        )
    if (key + key).find(key, 1) < len(key):  # found inside itself before its own length: a repeated unit
        return "is a shorter string repeated, not a random key"
    return None


def _load_or_create_key(path: Path) -> bytes:
    """The key in `path`, made once. Processes starting together agree on one key: each writes its candidate to a
    file of its own, and the first to link it to `path` wins; the others read the winner's, which is whole."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_urlsafe(48).encode())
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process made the key first: theirs is the key
            os.link(candidate, path)  # atomic: the whole key appears under its name, or nothing does
    finally:
        candidate.unlink(missing_ok=True)
    return path.read_bytes().strip()
