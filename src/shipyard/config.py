"""Settings, read from the environment (``SHIPYARD_*``) and from ``shipyard up`` options.

Everything that differs between a laptop and a cluster lives here, so that the same code
runs on SQLite + a local directory and on PostgreSQL + S3 with nothing but environment
variables changed.

Two kinds of variable tune speed, not behaviour, and the test suite uses both: the cost of
password hashes (``SHIPYARD_PASSWORD_HASH_COST=minimal``: cheap argon2id, for tests only,
never in production) and, for an S3 store, botocore's own ``AWS_MAX_ATTEMPTS`` and
``AWS_RETRY_MODE``, which the store's client honours (by default a call to an unreachable
store is tried five times with back-off, ~10 s, before it fails).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path.home() / ".shipyard"


class Settings(BaseSettings):
    """Process-wide settings; one instance is built at start and passed down explicitly."""

    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = 8080
    gateway_port: int | None = None
    db_url: str | None = None
    store_url: str | None = None
    s3_endpoint_url: str | None = None
    master_key: str | None = None  # base64; overrides the key file (for multi-host setups)

    access_token_ttl_s: int = 3600
    refresh_token_ttl_s: int = 30 * 24 * 3600
    api_key_default_ttl_days: int = 90
    # How long a process may go on trusting a resolved caller and project (0 disables);
    # changes made through this process take effect at once.
    auth_cache_ttl_s: float = 5.0
    # Instance types jobs may ask for: a JSON list of {name, cpus, memory_mib,
    # price_per_hour, gpus}, inline or in a file; the built-in cpu.* sizes when unset.
    instance_types: str | None = None
    # Run the controllers (jobs) in this process; off for an API-only process.
    controllers: bool = True
    # Where job instances run: ``local`` (process groups on this machine) or ``ray://HOST:PORT``.
    compute: str = "local"
    # A job controller holds each job it drives for this long and renews it; a job whose lease
    # lapses (its controller died) is adopted by another, or by the same one after a restart.
    job_lease_s: float = 15.0
    # How often a running job's checkpoints/ is copied to the store.
    checkpoint_sync_s: float = 10.0
    # What a stop allows a script between SIGTERM and SIGKILL (SageMaker gives 120 s).
    job_stop_grace_s: float = 30.0
    # Chaos for spot jobs: the expected number of reclaims per running hour (0: none).
    spot_interruptions_per_hour: float = 0.0
    # Webhooks: each attempt's HTTP timeout; attempts before a delivery is Failed; the wait
    # after the first failure, doubling (with jitter) up to the maximum.
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = Field(default=6, ge=1)
    webhook_backoff_s: float = 2.0
    webhook_backoff_max_s: float = 300.0
    # Hosting: an endpoint controller holds each endpoint for this long and renews it (like
    # jobs); it checks every replica's process and /ping at this interval and replaces a
    # replica that died or failed this many pings in a row.
    hosting_lease_s: float = 15.0
    hosting_health_interval_s: float = 1.0
    hosting_ping_failures: int = Field(default=3, ge=1)
    # A replica that prints no READY within this long is ended and counted as a failed start;
    # this many failed starts in a row fail a new endpoint (or roll an update back).
    hosting_start_timeout_s: float = 120.0
    hosting_start_attempts: int = Field(default=3, ge=1)
    # SIGTERM, then this long to drain in-flight requests, then SIGKILL.
    hosting_stop_grace_s: float = 10.0
    # A clean stop of the platform stops the replicas (the gateway answers 503 until they are
    # back); true leaves them serving and the next start adopts them.
    hosting_keep_replicas_on_stop: bool = False
    # Autoscaling reads invocation rates over this window.
    hosting_metrics_window_s: float = 30.0
    # Promotions: the bake of the blue/green deployment they run, the integration test's
    # latency budget (median of the example's invocations), and how long they may take.
    promotion_bake_s: float = 30.0
    promotion_latency_budget_ms: float = 1000.0
    promotion_timeout_s: float = 600.0
    login_attempts_per_window: int = 10
    login_window_s: int = 300
    audit_digest_every: int = 100
    max_upload_bytes: int = 50 * 1024**3
    # argon2id parameters of new password hashes: the library's defaults (~0.25 s of CPU per
    # hash), or ``minimal`` for test servers that create hundreds of users. Never ``minimal``
    # in production: it makes stolen hashes cheap to crack.
    password_hash_cost: Literal["standard", "minimal"] = "standard"
    # Whether ``shipyard up`` starts the gateway (data plane) beside the API. Off only for an
    # API-only process (another host runs ``shipyard gateway``) or a test server that
    # invokes no endpoint: the gateway is a second process with its own memory and start-up.
    gateway_enabled: bool = True
    # The gateway (data plane). Each API key gets a token bucket: this many requests a second
    # on average, bursts of up to ``burst`` (rate 0: no throttling); ``gateway_key_limits``
    # overrides both per key id, e.g. ``{"SHK...": [5, 10]}``.
    gateway_rate_per_key: float = 2000.0
    gateway_burst_per_key: float = 4000.0
    gateway_key_limits: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # How long the gateway trusts a key it has checked (a revocation takes at most this long).
    gateway_auth_cache_ttl_s: float = 5.0
    # Data capture: records per JSONL batch, the longest a record waits to be written, and
    # how many may wait in memory before new ones are dropped (counted) instead of queued.
    gateway_capture_batch_records: int = Field(default=1000, ge=1)
    gateway_capture_interval_s: float = 5.0
    gateway_capture_queue_max: int = Field(default=20_000, ge=1)
    # How long a request waits for a serverless variant at zero to get a replica (then 503),
    # and for a model's answer (then 424 ModelError, as SageMaker's 60 s).
    gateway_cold_start_wait_s: float = 30.0
    # How often the gateway reads changed endpoint routes (a name it does not know makes it
    # read at once, so a new endpoint never waits for this).
    gateway_routes_poll_s: float = Field(default=0.25, gt=0)
    gateway_model_timeout_s: float = 60.0
    # Asynchronous inference: how often each gateway looks for queued requests (it looks at
    # once when it queued one itself) and how many it runs at a time.
    gateway_async_poll_s: float = 0.5
    gateway_async_max_in_flight: int = Field(default=16, ge=1)
    # CPUs the gateway runs on: "auto" is the last one when there are two or more (local
    # replicas are placed from the first, and a proxy sharing a core with the replica it
    # waits on loses a quarter of its throughput), "all" leaves it to the OS, or a list
    # like "2,3".
    gateway_cpus: str = "auto"
    # How often the monitoring controller looks for due schedules and pending executions
    # (a "run now" wakes it at once).
    monitoring_poll_s: float = 5.0
    log_level: str = "info"

    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'shipyard.db'}"

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or str(self.home / "store")

    @property
    def resolved_gateway_port(self) -> int:
        return self.gateway_port or self.port + 1

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.resolved_gateway_port}"

    @property
    def master_key_path(self) -> Path:
        return self.home / "master.key"

    @property
    def audit_key_path(self) -> Path:
        return self.home / "audit-signing.key"

    @property
    def jobs_dir(self) -> Path:
        """Job working trees and logs, on the machine that runs the controller."""
        return self.home / "jobs"

    @property
    def models_dir(self) -> Path:
        """Verified, extracted model versions (one directory per manifest digest)."""
        return self.home / "models"

    @property
    def endpoints_dir(self) -> Path:
        """Replica working directories and logs, on the machine that runs the controller."""
        return self.home / "endpoints"

    @property
    def credentials_path(self) -> Path:
        return self.home / "admin-credentials.json"
