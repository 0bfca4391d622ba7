"""What every provider adapter shares: the call it receives, what it returns and
how it fails.

An adapter translates one provider call from the router's request model into a
provider's wire format and back. It raises `ProviderFailure` with an outcome
that tells the caller whether to move on to the next provider.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

import aiohttp
import httpx

# Outcomes after which the next candidate provider is tried.
RETRYABLE_OUTCOMES = frozenset({"error", "timeout", "rate_limited"})


@dataclass(frozen=True, slots=True)
class ProviderTarget:
    """A provider as the registry describes it, secret included."""

    id: str
    name: str
    type: str
    base_url: str
    api_key: str
    cost_per_image: Decimal
    max_images_per_request: int
    timeout_ms: int
    models: tuple[str, ...] = ()
    supported_sizes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One call's worth of a generation request."""

    prompt: str
    n: int
    size: str
    model: str | None = None
    quality: str | None = None
    style: str | None = None
    user: str | None = None


@dataclass(slots=True)
class ProviderImage:
    """An image as a provider returned it: inline bytes or a URL to fetch once."""

    data: bytes | None = None
    url: str | None = None
    revised_prompt: str | None = None


@dataclass(slots=True)
class ProviderResult:
    images: list[ProviderImage]
    status_code: int = 200
    # Facts worth keeping on the attempt, such as a size mapping.
    notes: dict[str, str] = field(default_factory=dict)


class ProviderFailure(Exception):
    """A provider call that produced no usable images.

    `outcome` is one of: error (5xx, 401/403, malformed answer), timeout,
    rate_limited (429), content_policy (the prompt was refused) and
    invalid_request (the provider rejected the request as the caller's error).
    """

    def __init__(
        self,
        outcome: str,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_seconds: int = 0,
        code: str | None = None,
        reported: bool = True,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.status_code = status_code
        self.retry_after_seconds = retry_after_seconds
        self.code = code
        # False for a call the registry itself refused (an open circuit, a
        # pause, an inactive provider): reporting it would tell the registry
        # nothing, and a rate_limited report would pause the provider.
        self.reported = reported

    @property
    def retryable(self) -> bool:
        return self.outcome in RETRYABLE_OUTCOMES


# Errors an HTTP call through the shared client can raise: httpx's own, and the
# aiohttp errors that httpx-aiohttp 0.2.0 passes on unmapped, such as
# ClientResponseError for a malformed response.
TRANSPORT_ERRORS = (httpx.HTTPError, aiohttp.ClientError)


def is_timeout(error: Exception) -> bool:
    """Tell whether a transport error is a time-out rather than a failed connection.

    httpx-aiohttp 0.2.0 maps every aiohttp connection error, a refused
    connection included, to httpx.ConnectTimeout. Its real time-outs come from
    aiohttp errors that subclass TimeoutError, so the cause decides.
    """
    if not isinstance(error, httpx.TimeoutException):
        return isinstance(error, TimeoutError)
    return error.__cause__ is None or isinstance(error.__cause__, TimeoutError)


def error_name(error: Exception) -> str:
    """Name the underlying error class, e.g. ClientConnectorError, for messages."""
    cause = error.__cause__
    if isinstance(error, httpx.HTTPError) and isinstance(cause, aiohttp.ClientError):
        return type(cause).__name__
    return type(error).__name__


def call_failure(error: Exception, timeout: float) -> ProviderFailure:
    """Classify a provider call that raised a transport error."""
    if is_timeout(error):
        return ProviderFailure("timeout", f"no response within {timeout:.1f} s")
    return ProviderFailure("error", f"connection failed: {error_name(error)}")


# Downloads an image a provider points at, through the router's URL guard.
ImageFetcher = Callable[[str], Awaitable[bytes]]
# Receives a running task's progress in percent (0 to 100).
ProgressCallback = Callable[[int], Awaitable[None]]


class ProviderAdapter(Protocol):
    def max_images_per_call(self, target: ProviderTarget, model: str | None) -> int:
        """Return how many images one call may request of `target` for `model`."""
        ...

    async def generate(
        self,
        client: httpx.AsyncClient,
        target: ProviderTarget,
        call: ProviderCall,
        timeout: float,
        *,
        fetch_image: ImageFetcher,
        on_progress: ProgressCallback | None = None,
    ) -> ProviderResult:
        """Make one provider call for `call.n` images.

        `timeout` is in seconds. Raises `ProviderFailure` when no usable images
        come back, and `ValidationError` for a request that breaks a model's
        rules (checked before anything is sent).
        """
        ...


def retry_after_seconds(response: httpx.Response) -> int:
    """Seconds from a Retry-After header in its delta-seconds form; 0 if absent."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0, int(float(value)))
    except ValueError:
        return 0
