"""Stored images: checked with Pillow, stored under random names, read back.

Names are capability tokens (192 random bits), so a URL is unguessable and can
be served without a database look-up. The runner and the routes use only the
`ImageStore` interface. `LocalImageStore` keeps images in a directory that
nginx serves, and `S3ImageStore` (in `storage_s3`) keeps them in a bucket.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx
from PIL import Image, UnidentifiedImageError

from generation_service.adapters.base import (
    TRANSPORT_ERRORS,
    ProviderFailure,
    error_name,
    is_timeout,
)
from router_common.errors import ServiceUnavailableError
from router_common.url_guard import (
    Allowlist,
    UnsafeUrlError,
    check_resolved_host,
    check_url,
)

if TYPE_CHECKING:
    from generation_service.settings import Settings

FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
}
CONTENT_TYPES = dict(FORMATS.values())
FILES_PATH = "/api/v1/images/files/"
# 24 random bytes in URL-safe base64 are 32 characters; the extension is one
# of FORMATS. Anything else is not a stored image, whatever the store holds.
FILE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{32}\.(?:png|jpg|webp)")
NAME_TOKEN_BYTES = 24
# Stored images never change, so caches may keep them for a year.
CACHE_CONTROL = "public, max-age=31536000, immutable"
# Size of the chunks that a stream reads at a time, in bytes.
STREAM_CHUNK_BYTES = 64 * 1024


class StorageUnavailableError(ServiceUnavailableError):
    """The image store could not be reached or refused an operation."""

    default_message = "Image storage is unavailable; retry shortly"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message, headers={"Retry-After": "5"}, code="storage_unavailable"
        )


@dataclass(frozen=True, slots=True)
class StoredImage:
    file_name: str
    content_type: str
    width: int
    height: int
    byte_size: int


@dataclass(frozen=True, slots=True)
class ImageStream:
    """A stored image opened for reading, delivered in chunks."""

    content_type: str
    byte_size: int
    chunks: AsyncIterator[bytes]


class ImageStore(Protocol):
    """Store of generated images, whichever backend IMAGE_STORAGE selects."""

    def url_for(self, file_name: str) -> str:
        """Return the public URL of a stored image."""
        ...

    async def save(self, data: bytes) -> StoredImage:
        """Check that `data` is an image and store it under a new random name.

        Raises ValueError when `data` is not a supported image, and
        StorageUnavailableError when the store fails.
        """
        ...

    async def read(self, file_name: str) -> bytes:
        """Return a stored image's bytes; raise FileNotFoundError if missing."""
        ...

    async def stream(self, file_name: str) -> ImageStream:
        """Open a stored image for streaming; raise FileNotFoundError if missing."""
        ...

    async def delete(self, file_names: list[str]) -> None:
        """Delete stored images; names that do not exist are skipped."""
        ...


def is_valid_file_name(file_name: str) -> bool:
    return FILE_NAME_PATTERN.fullmatch(file_name) is not None


def content_type_for(file_name: str) -> str:
    return CONTENT_TYPES[file_name.rsplit(".", 1)[1]]


def inspect_image(data: bytes) -> tuple[str, str, int, int]:
    """Return the extension, content type, width and height of an image.

    Raises ValueError when Pillow cannot read `data` or its format is not one
    of FORMATS. Pillow's checks are CPU-bound, so call this in a thread.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, width, height = image.format, image.width, image.height
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"not a readable image: {error}") from None
    if image_format not in FORMATS:
        raise ValueError(f"unsupported image format {image_format}")
    extension, content_type = FORMATS[image_format]
    return extension, content_type, width, height


def new_file_name(extension: str) -> str:
    return f"{secrets.token_urlsafe(NAME_TOKEN_BYTES)}.{extension}"


async def read_in_chunks(
    read: Callable[[int], bytes], close: Callable[[], None]
) -> AsyncIterator[bytes]:
    """Yield blocking `read(size)` results from a thread until one is empty,
    then call `close`, also when the consumer stops early."""
    try:
        while chunk := await asyncio.to_thread(read, STREAM_CHUNK_BYTES):
            yield chunk
    finally:
        close()


class LocalImageStore:
    """Images in a local directory, written atomically; nginx serves them."""

    def __init__(self, directory: Path, public_base_url: str) -> None:
        self.directory = directory
        self.public_base_url = public_base_url.rstrip("/")
        directory.mkdir(parents=True, exist_ok=True)

    def url_for(self, file_name: str) -> str:
        return f"{self.public_base_url}{FILES_PATH}{file_name}"

    def path_for(self, file_name: str) -> Path:
        return self.directory / file_name

    async def save(self, data: bytes) -> StoredImage:
        return await asyncio.to_thread(self._save, data)

    def _save(self, data: bytes) -> StoredImage:
        extension, content_type, width, height = inspect_image(data)
        file_name = new_file_name(extension)
        final = self.path_for(file_name)
        temporary = final.with_suffix(".part")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, final)
        return StoredImage(file_name, content_type, width, height, len(data))

    async def read(self, file_name: str) -> bytes:
        return await asyncio.to_thread(self.path_for(file_name).read_bytes)

    async def stream(self, file_name: str) -> ImageStream:
        handle = await asyncio.to_thread(self.path_for(file_name).open, "rb")
        byte_size = os.fstat(handle.fileno()).st_size
        return ImageStream(
            content_type_for(file_name),
            byte_size,
            read_in_chunks(handle.read, handle.close),
        )

    async def delete(self, file_names: list[str]) -> None:
        def remove() -> None:
            for name in file_names:
                self.path_for(name).unlink(missing_ok=True)

        await asyncio.to_thread(remove)


def create_image_store(settings: Settings) -> ImageStore:
    """Build the store that IMAGE_STORAGE selects."""
    if settings.image_storage == "s3":
        from generation_service.storage_s3 import S3ImageStore

        return S3ImageStore.from_settings(settings)
    return LocalImageStore(settings.images_dir, settings.public_base_url)


async def fetch_provider_image(
    client: httpx.AsyncClient,
    url: str,
    *,
    allowlist: Allowlist,
    max_bytes: int,
    timeout: float,
) -> bytes:
    """Download an image a provider pointed at, once, refusing internal hosts.

    Redirects are not followed, the body is capped at `max_bytes` and must be
    declared as an image.
    """
    try:
        check_url(url, allowlist)
        parsed = httpx.URL(url)
        await check_resolved_host(
            parsed.host,
            parsed.port or (443 if parsed.scheme == "https" else 80),
            allowlist,
        )
    except UnsafeUrlError as error:
        raise ProviderFailure("error", f"image URL rejected: {error}") from None

    try:
        async with client.stream("GET", url, timeout=timeout) as response:
            if response.status_code != 200:
                raise ProviderFailure(
                    "error", f"image URL returned HTTP {response.status_code}"
                )
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("image/"):
                raise ProviderFailure(
                    "error", f"image URL served {content_type or 'no type'}"
                )
            chunks: list[bytes] = []
            received = 0
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > max_bytes:
                    raise ProviderFailure(
                        "error", f"image larger than {max_bytes} bytes"
                    )
                chunks.append(chunk)
    except TRANSPORT_ERRORS as error:
        if is_timeout(error):
            raise ProviderFailure("timeout", "image download timed out") from error
        raise ProviderFailure(
            "error", f"image download failed: {error_name(error)}"
        ) from error
    return b"".join(chunks)
