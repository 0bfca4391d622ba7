"""Settings of the generation service, read from the environment."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from router_common.settings import ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8103

    keys_grpc_addr: str = "127.0.0.1:8112"
    providers_grpc_addr: str = "127.0.0.1:8114"
    # Time-out of one call to the keys service or the provider registry.
    grpc_timeout_seconds: float = Field(default=5.0, gt=0)

    # Where stored images live, and the public address their URLs start with.
    # `local` keeps them in IMAGES_DIR, `s3` in an S3-compatible bucket.
    image_storage: Literal["local", "s3"] = "local"
    images_dir: Path = Path(".data/images")
    public_base_url: str = "http://127.0.0.1:8080"
    # The bucket, with IMAGE_STORAGE=s3. An empty endpoint means AWS itself;
    # empty keys let boto3 find credentials (AWS_* variables, a role).
    s3_endpoint_url: str = ""
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")
    # Key prefix of the objects, such as `images/`; a trailing slash is added.
    s3_prefix: str = ""
    # `path` puts the bucket in the URL path, which MinIO and most
    # self-hosted servers need; `auto` lets botocore choose.
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # Connect and read time-out of one S3 request, in seconds.
    s3_timeout_seconds: float = Field(default=30.0, gt=0)

    # Comma-separated `host` or `host:port` entries that provider calls may reach
    # although they are internal addresses (the local simulator, say).
    provider_url_allowlist: str = ""

    # Overall deadline of one synchronous generation, across every fallback.
    generation_deadline_seconds: float = Field(default=120.0, gt=0)
    # Largest image accepted from a provider, in bytes.
    max_provider_image_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    # How long this process holds a job before the lease must be renewed.
    job_lease_seconds: float = Field(default=30.0, gt=0)
    # A job is given up after this many runs (each run that died counts).
    job_max_runs: int = Field(default=3, ge=1)
    # Database connections each API process keeps open, without overflow: the
    # synchronous path writes on every request, and a connection opened and
    # closed per request costs Postgres a new backend process.
    database_pool_size: int = Field(default=20, ge=1, le=500)
    # How often an idle worker looks for jobs, and how many it runs at once.
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    worker_concurrency: int = Field(default=8, ge=1)
    # Where the worker serves /metrics and /healthz; port 0 turns it off.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=8105, ge=0, le=65535)
    # Whether a content-policy refusal may be retried on the next provider.
    retry_content_policy: bool = False

    # Limits; 0 turns one off. Request limits use a sliding window of this
    # length; image quotas a fixed window of that length (a UTC day by default).
    rate_limit_window_seconds: float = Field(default=60.0, gt=0)
    image_quota_window_seconds: int = Field(default=86400, gt=0)
    user_requests_per_minute: int = Field(default=120, ge=0)
    user_images_per_day: int = Field(default=1000, ge=0)

    @model_validator(mode="after")
    def _check_image_storage(self) -> "Settings":
        if self.image_storage != "s3":
            return self
        if not self.s3_bucket:
            raise ValueError("S3_BUCKET is required when IMAGE_STORAGE=s3")
        has_key_id = bool(self.s3_access_key_id)
        has_secret = bool(self.s3_secret_access_key.get_secret_value())
        if has_key_id != has_secret:
            raise ValueError(
                "set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither "
                "to let boto3 find credentials itself"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
