"""The one typed settings object.

Every value comes from the environment (prefix ``DERMTRIAGE_``) or its default here; no other
module reads ``os.environ``. Lower layers (``pipeline``, ``models``, ``training``) never see this
object: the command line and the service read it and pass plain values down, so they stay testable.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from models.engine import EngineConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """DermTriage configuration; see the README's table of variables."""

    model_config = SettingsConfigDict(env_prefix="DERMTRIAGE_", extra="ignore")

    data_dir: Path = Field(default=PROJECT_ROOT / "data", description="Where runtime state lives.")
    dataset_dir: Path = Field(
        default=PROJECT_ROOT.parent / "shared" / "data" / "derm-dev",
        description="A derm-dev style data set: metadata.csv plus images/.",
    )
    extra_dataset_dirs: list[Path] = Field(
        default=[PROJECT_ROOT.parent / "shared" / "data" / "ham-extra"],
        description="More data sets in the same layout, trained on with dataset_dir and read "
        "back to evaluate a model on its test split (ham-extra: the rest of HAM10000); "
        "folders that are missing are skipped.",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DERMTRIAGE_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking server; empty means a local store under data_dir.",
    )
    registered_model_name: str = "dermtriage-classifier"
    model_uri: str = "models:/dermtriage-classifier@champion"
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; empty means SQLite under data_dir."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    language: Literal["fr", "en"] = "fr"
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_request_bytes: int = Field(default=80 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=50_000_000, gt=0)
    max_files_per_request: int = Field(
        default=5, gt=0, description="photos in one case submission (refused while streaming)"
    )
    # Durability (docs/durability.md): the scoring queue's lease and retries, the orphan sweep.
    scoring_lease_seconds: float = Field(
        default=300.0, gt=0, description="a claimed case is scored again after this if not done"
    )
    scoring_max_attempts: int = Field(
        default=10, gt=0, description="then the case stays flagged for a human, with the reason"
    )
    orphan_grace_seconds: float = Field(
        default=3600.0, ge=0, description="start-up sweep: age of an unreferenced file it removes"
    )
    # Scaling out (docs/deployment.md): `dermtriage worker` processes, `serve --no-worker`.
    scoring_drain_seconds: float = Field(
        default=20.0,
        ge=0,
        description="On SIGTERM a worker finishes the case in hand for at most this long, then "
        "releases its lease (keep it under the orchestrator's grace period, 30 s by default).",
    )
    shadow_scoring: bool = Field(
        default=True, description="Workers also score with the registry's challenger, if any."
    )
    shipped_model_dir: Path = PROJECT_ROOT / "models" / "shipped"
    inference_batch_size: int = Field(default=32, gt=0)
    inference_max_wait_ms: float = Field(default=10.0, ge=0)
    inference_cpu_forward_batch: int = Field(
        default=4, ge=0, description="CPU only: photos per forward pass (0: the whole batch)"
    )
    torch_threads: int = Field(default=0, ge=0, description="0 means torch's own choice.")
    inference_device: Literal["auto", "cpu", "cuda"] = "auto"
    inference_compile: bool = False
    model_check_seconds: float = Field(
        default=30.0, ge=0, description="how often the service asks whether the champion moved"
    )

    def engine_config(self) -> EngineConfig:
        """The inference engine's settings (batching, device, threads)."""
        from models.engine import EngineConfig

        return EngineConfig(
            max_batch_size=self.inference_batch_size,
            max_wait_ms=self.inference_max_wait_ms,
            device=self.inference_device,
            compile=self.inference_compile,
            threads=self.torch_threads,
            cpu_forward_batch=self.inference_cpu_forward_batch,
        )

    review_deadline_hours: float = Field(
        default=48.0, gt=0, description="The service's promise: first reading within this delay."
    )
    scoring_worker: bool = Field(
        default=True, description="Score queued cases in a background thread of the service."
    )
    scoring_poll_seconds: float = Field(default=2.0, gt=0)
    real_world_refresh_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often the service checks whether the in-service versions' real-world "
        "figures need recomputing (docs/governance.md); computed once at start. 0: never in the "
        "background, the pages compute on their first look.",
    )
    worklist_page_size: int = Field(default=20, gt=0, le=200)
    # Access (docs/access.md): sessions, API tokens, cookie flags, sign-in rate limit.
    session_hours: float = Field(default=12.0, gt=0, description="browser session lifetime")
    api_token_days: float = Field(default=30.0, gt=0, description="API bearer token lifetime")
    cookie_secure: bool | None = Field(
        default=None,
        description="Secure flag on the session cookie; empty means on, except when serving on "
        "the loopback default (http://127.0.0.1 has no TLS, and browsers drop Secure cookies).",
    )
    login_max_failures: int = Field(default=5, gt=0, description="per login, in the window")
    login_max_failures_per_client: int = Field(default=20, gt=0, description="per client IP")
    login_window_minutes: float = Field(default=15.0, gt=0)
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: IP "
        "addresses or networks, comma-separated (e.g. 10.0.0.5,172.18.0.0/16). Empty: none, the "
        "client address is the TCP peer's, whatever headers say.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: Any) -> Any:
        """``DERMTRIAGE_TRUSTED_PROXIES=10.0.0.5, 10.1.0.0/16``: each an address or a network."""
        items = value.split(",") if isinstance(value, str) else value
        proxies = tuple(str(item).strip() for item in items if str(item).strip())
        for proxy in proxies:
            ipaddress.ip_network(proxy, strict=False)  # ValueError: not an address or network
        return proxies

    @property
    def secure_cookies(self) -> bool:
        """Whether the session cookie gets the Secure flag (see ``cookie_secure``)."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.host not in ("127.0.0.1", "localhost", "::1")

    @property
    def dataset_dirs(self) -> list[Path]:
        """Every labelled data set here: ``dataset_dir`` first, then the extra ones that exist."""
        extra = [d for d in self.extra_dataset_dirs if (d / "metadata.csv").is_file()]
        return [self.dataset_dir, *[d for d in extra if d != self.dataset_dir]]

    @property
    def tracking_uri(self) -> str:
        """The MLflow store to use: the configured server, or SQLite under ``data_dir``."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> str:
        """Where a local MLflow store keeps run artefacts."""
        return (self.data_dir / "mlflow" / "artifacts").resolve().as_uri()

    @property
    def sqlalchemy_url(self) -> str:
        """The case database: the configured URL, or SQLite under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'dermtriage.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
