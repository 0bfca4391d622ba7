"""Stored images in an S3-compatible bucket, through boto3.

boto3 is blocking, so every call runs in a thread with `asyncio.to_thread`; its
clients are thread-safe. Objects are keyed `<S3_PREFIX><file name>` and carry
their content type and a year-long immutable Cache-Control. Clients never
reach the bucket: the URLs point at `/api/v1/images/files/<name>`, which
generation serves from the bucket (`routes/files.py`) and nginx proxies to it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from generation_service.storage import (
    CACHE_CONTROL,
    FILES_PATH,
    ImageStream,
    StorageUnavailableError,
    StoredImage,
    content_type_for,
    inspect_image,
    new_file_name,
    read_in_chunks,
)

if TYPE_CHECKING:
    from generation_service.settings import Settings

log = structlog.get_logger(__name__)

# Error codes with which S3 and compatible servers report a missing object.
MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# DeleteObjects takes at most this many keys per request.
MAX_KEYS_PER_DELETE = 1000
# At most as many connections as asyncio's default thread pool has threads
# (min(32, CPUs + 4)), since each call uses one thread.
MAX_POOL_CONNECTIONS = 32


class S3ImageStore:
    """Images as objects in one bucket, under an optional key prefix."""

    def __init__(
        self, client: Any, bucket: str, prefix: str, public_base_url: str
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.public_base_url = public_base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ImageStore:
        """Build the store and its boto3 client from the S3_* settings.

        Without S3_ACCESS_KEY_ID, boto3 finds credentials itself (AWS_*
        variables, a shared config file, an instance or pod role).
        """
        secret = settings.s3_secret_access_key.get_secret_value()
        config = Config(
            connect_timeout=settings.s3_timeout_seconds,
            read_timeout=settings.s3_timeout_seconds,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=MAX_POOL_CONNECTIONS,
            s3={"addressing_style": settings.s3_addressing_style},
            # botocore 1.36 and later add CRC checksums to every upload by
            # default. Several S3-compatible servers reject them, so send them
            # only where the S3 API requires one.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # A session of its own, so that the process-wide default session's
        # state is never shared or changed.
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url or None,
            region_name=settings.s3_region or None,
            aws_access_key_id=settings.s3_access_key_id or None,
            aws_secret_access_key=secret or None,
            config=config,
        )
        return cls(
            client,
            settings.s3_bucket,
            normalized_prefix(settings.s3_prefix),
            settings.public_base_url,
        )

    def url_for(self, file_name: str) -> str:
        return f"{self.public_base_url}{FILES_PATH}{file_name}"

    def key_for(self, file_name: str) -> str:
        return f"{self.prefix}{file_name}"

    async def save(self, data: bytes) -> StoredImage:
        extension, content_type, width, height = await asyncio.to_thread(
            inspect_image, data
        )
        file_name = new_file_name(extension)
        key = self.key_for(file_name)
        await self._call(
            "put_object",
            key,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            CacheControl=CACHE_CONTROL,
        )
        return StoredImage(file_name, content_type, width, height, len(data))

    async def read(self, file_name: str) -> bytes:
        key = self.key_for(file_name)
        response = await self._call("get_object", key, Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            return await asyncio.to_thread(body.read)
        except BotoCoreError as error:
            raise self._unavailable("get_object", key, error) from None
        finally:
            body.close()

    async def stream(self, file_name: str) -> ImageStream:
        key = self.key_for(file_name)
        response = await self._call("get_object", key, Bucket=self.bucket, Key=key)
        body = response["Body"]
        return ImageStream(
            content_type_for(file_name),
            int(response["ContentLength"]),
            read_in_chunks(body.read, body.close),
        )

    async def delete(self, file_names: list[str]) -> None:
        """Delete the objects of `file_names`.

        Failures are logged with the keys and not raised: the callers delete
        the images of a run whose outcome is already recorded, and a leftover
        object is unreachable, because its name was never handed out.
        """
        keys = [self.key_for(name) for name in file_names]
        for start in range(0, len(keys), MAX_KEYS_PER_DELETE):
            batch = keys[start : start + MAX_KEYS_PER_DELETE]
            try:
                response = await self._call(
                    "delete_objects",
                    batch[0],
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            except StorageUnavailableError:
                log.error("image_delete_failed", bucket=self.bucket, keys=batch)
                continue
            for failed in response.get("Errors", []):
                log.error(
                    "image_delete_failed",
                    bucket=self.bucket,
                    key=failed.get("Key"),
                    code=failed.get("Code"),
                    error=failed.get("Message"),
                )

    async def _call(self, operation: str, key: str, **arguments: Any) -> Any:
        """Run one client operation in a thread, mapping its failures.

        A missing object raises FileNotFoundError; any other failure is
        logged and raises StorageUnavailableError.
        """
        method = getattr(self.client, operation)
        try:
            return await asyncio.to_thread(method, **arguments)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in MISSING_OBJECT_CODES:
                raise FileNotFoundError(key) from None
            raise self._unavailable(operation, key, error) from None
        except BotoCoreError as error:
            raise self._unavailable(operation, key, error) from None

    def _unavailable(
        self, operation: str, key: str, error: Exception
    ) -> StorageUnavailableError:
        # botocore's messages name the operation, endpoint and error code,
        # never the credentials.
        log.error(
            "image_storage_failed",
            operation=operation,
            bucket=self.bucket,
            key=key,
            error_class=type(error).__name__,
            error=str(error),
        )
        return StorageUnavailableError()


def normalized_prefix(prefix: str) -> str:
    """Return `prefix` with no leading slash and one trailing slash, or ''."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""
