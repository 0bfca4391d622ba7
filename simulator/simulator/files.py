"""Images that responses reference by URL, served under `/files/<id>.<ext>` until
they expire."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

# Bounds memory when a long benchmark creates many URLs. The bytes themselves
# are usually shared with the render cache, so an entry is small.
MAX_FILES = 10_000


@dataclass(frozen=True)
class StoredFile:
    """One served image and the monotonic time at which it expires."""

    data: bytes
    media_type: str
    expires_at: float


class FileStore:
    """In-memory store of served images with a time-to-live per file."""

    def __init__(self, max_files: int = MAX_FILES) -> None:
        self._files: OrderedDict[str, StoredFile] = OrderedDict()
        self._max_files = max_files
        self._last_sweep = 0.0

    def add(self, data: bytes, media_type: str, ttl_seconds: float) -> str:
        """Store an image and return its file name, such as `3f2a….png`."""
        self._drop_expired()
        extension = media_type.removeprefix("image/")
        name = f"{uuid.uuid4().hex}.{extension}"
        expires_at = time.monotonic() + ttl_seconds
        self._files[name] = StoredFile(data, media_type, expires_at)
        while len(self._files) > self._max_files:
            self._files.popitem(last=False)
        return name

    def get(self, name: str) -> StoredFile | None:
        """Return the stored image, or None when it is unknown or expired."""
        stored = self._files.get(name)
        if stored is None or stored.expires_at <= time.monotonic():
            return None
        return stored

    def _drop_expired(self) -> None:
        # A sweep scans every entry, so run it at most once per second.
        now = time.monotonic()
        if now - self._last_sweep < 1.0:
            return
        self._last_sweep = now
        expired = [name for name, f in self._files.items() if f.expires_at <= now]
        for name in expired:
            del self._files[name]
