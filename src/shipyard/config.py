"""Settings, read from the environment (``SHIPYARD_*``) and from ``shipyard up`` options.

Everything that differs between a laptop and a cluster lives here, so that the same code
runs on SQLite + a local directory and on PostgreSQL + S3 with nothing but environment
variables changed.
"""

from __future__ import annotations

from pathlib import Path

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
    login_attempts_per_window: int = 10
    login_window_s: int = 300
    audit_digest_every: int = 100
    max_upload_bytes: int = 50 * 1024**3
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
    def credentials_path(self) -> Path:
        return self.home / "admin-credentials.json"
