"""Stored images: checked with Pillow, written atomically under random names.

Names are capability tokens (192 random bits), so a URL is unguessable and can
be served by nginx without a database look-up.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image, UnidentifiedImageError

from generation_service.adapters.base import ProviderFailure
from router_common.url_guard import (
    Allowlist,
    UnsafeUrlError,
    check_resolved_host,
    check_url,
)

FORMATS = {
    "PNG": ("png", "image/png"),
    "JPEG": ("jpg", "image/jpeg"),
    "WEBP": ("webp", "image/webp"),
}
FILES_PATH = "/api/v1/images/files/"


@dataclass(frozen=True, slots=True)
class StoredImage:
    file_name: str
    content_type: str
    width: int
    height: int
    byte_size: int


class ImageStore:
    def __init__(self, directory: Path, public_base_url: str) -> None:
        self.directory = directory
        self.public_base_url = public_base_url.rstrip("/")
        directory.mkdir(parents=True, exist_ok=True)

    def url_for(self, file_name: str) -> str:
        return f"{self.public_base_url}{FILES_PATH}{file_name}"

    def path_for(self, file_name: str) -> Path:
        return self.directory / file_name

    async def save(self, data: bytes) -> StoredImage:
        """Check that `data` is an image and store it; raise ValueError if not."""
        return await asyncio.to_thread(self._save, data)

    def _save(self, data: bytes) -> StoredImage:
        try:
            with Image.open(io.BytesIO(data)) as image:
                image_format, width, height = image.format, image.width, image.height
                image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise ValueError(f"not a readable image: {error}") from None
        if image_format not in FORMATS:
            raise ValueError(f"unsupported image format {image_format}")

        extension, content_type = FORMATS[image_format]
        file_name = f"{secrets.token_urlsafe(24)}.{extension}"
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

    async def delete(self, file_names: list[str]) -> None:
        def remove() -> None:
            for name in file_names:
                self.path_for(name).unlink(missing_ok=True)

        await asyncio.to_thread(remove)


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
        raise ProviderFailure("error", f"image URL refused: {error}") from None

    try:
        async with client.stream("GET", url, timeout=timeout) as response:
            if response.status_code != 200:
                raise ProviderFailure(
                    "error", f"image URL answered HTTP {response.status_code}"
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
    except httpx.TimeoutException as error:
        raise ProviderFailure("timeout", "image download timed out") from error
    except httpx.HTTPError as error:
        raise ProviderFailure(
            "error", f"image download failed: {type(error).__name__}"
        ) from error
    return b"".join(chunks)
