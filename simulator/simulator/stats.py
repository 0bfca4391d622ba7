"""Per-tag call counts and the last requests, read by tests through `/__sim/calls`.

Credential headers are replaced by a marker and the `key=` value is redacted
from the path, so recorded requests do not echo the credentials that the
simulator checks. Secrets sent in other headers or in the body are recorded.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData, Headers, UploadFile

MAX_RECORDS_PER_TAG = 50
MAX_STRING_CHARS = 200
MAX_LIST_ITEMS = 20
RATE_WINDOW_SECONDS = 60.0

CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "mj-api-secret", "x-api-key", "api-key"}
)
PRESENT = "<present>"


@dataclass
class CallRecord:
    """One request that reached a provider route."""

    sequence: int
    time: float
    method: str
    path: str
    format: str
    headers: dict[str, str]
    credential_present: bool
    credential_matched: bool | None
    body: Any
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "format": self.format,
            "headers": self.headers,
            "credentialPresent": self.credential_present,
            "credentialMatched": self.credential_matched,
            "body": self.body,
            "status": self.status,
        }


@dataclass
class TagStats:
    """Call count, last requests and recent call times of one tag."""

    count: int = 0
    records: deque[CallRecord] = field(
        default_factory=lambda: deque(maxlen=MAX_RECORDS_PER_TAG)
    )
    recent_times: deque[float] = field(default_factory=deque)

    def calls_in_window(self, now: float) -> int:
        while self.recent_times and self.recent_times[0] <= now - RATE_WINDOW_SECONDS:
            self.recent_times.popleft()
        return len(self.recent_times)


class CallStats:
    """Calls of every tag since start or since the tag was last reset."""

    def __init__(self) -> None:
        self._tags: dict[str, TagStats] = {}

    def record(self, tag: str, record_fields: dict[str, Any]) -> CallRecord:
        """Count a call under the tag and return its record, numbered from 1."""
        stats = self._tags.setdefault(tag, TagStats())
        stats.count += 1
        stats.recent_times.append(time.monotonic())
        record = CallRecord(sequence=stats.count, time=time.time(), **record_fields)
        stats.records.append(record)
        return record

    def tag(self, tag: str) -> TagStats:
        """Return the tag's statistics, or empty ones for an unknown tag."""
        stats = self._tags.get(tag)
        return stats if stats is not None else TagStats()

    def counts(self) -> dict[str, int]:
        return {tag: stats.count for tag, stats in sorted(self._tags.items())}

    def reset(self, tag: str | None = None) -> None:
        """Forget one tag, or every tag when `tag` is None."""
        if tag is None:
            self._tags.clear()
        else:
            self._tags.pop(tag, None)


def redact_headers(headers: Headers) -> dict[str, str]:
    """Return the request headers with credential values replaced by a marker."""
    redacted: dict[str, str] = {}
    for name, value in headers.items():
        redacted[name] = PRESENT if name.lower() in CREDENTIAL_HEADERS else value
    return redacted


def summarize_json(value: Any) -> Any:
    """Return a copy of a JSON value with long strings and lists shortened."""
    if isinstance(value, str):
        return _shorten(value)
    if isinstance(value, list):
        items = [summarize_json(item) for item in value[:MAX_LIST_ITEMS]]
        if len(value) > MAX_LIST_ITEMS:
            items.append(f"... ({len(value)} items)")
        return items
    if isinstance(value, dict):
        return {str(key): summarize_json(item) for key, item in value.items()}
    return value


def summarize_form(form: FormData) -> dict[str, Any]:
    """Summarize multipart fields: text values shortened, files by name and size.

    A field sent several times, such as `image[]`, maps to a list of summaries.
    """
    grouped: dict[str, list[Any]] = {}
    for name, value in form.multi_items():
        grouped.setdefault(name, []).append(_summarize_part(value))
    return {
        name: entries[0] if len(entries) == 1 else entries
        for name, entries in grouped.items()
    }


def summarize_raw(content_type: str | None, body: bytes) -> dict[str, Any]:
    """Summarize a body that is neither JSON nor multipart by type and size."""
    return {"contentType": content_type, "size": len(body)}


def _summarize_part(value: str | UploadFile) -> Any:
    if isinstance(value, UploadFile):
        return {
            "filename": value.filename,
            "contentType": value.content_type,
            "size": value.size,
        }
    return _shorten(value)


def _shorten(text: str) -> str:
    if len(text) <= MAX_STRING_CHARS:
        return text
    return f"{text[:MAX_STRING_CHARS]}... ({len(text)} chars)"
