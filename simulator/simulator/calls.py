"""Steps shared by every provider route: options, call recording, credentials
and the faults that do not depend on the wire format's request body.

A request passes these steps in order, and the first one that produces a
response ends it:

1. parse the `/s/<options>/` prefix (400 on an invalid option, not counted);
2. count the call under its tag and record it;
3. `delay` or `hang`;
4. credential check (401);
5. `fail`, then `fail_first`, then `rate_limit`;
6. `malformed`, `empty` or `html` bodies;
7. the format's own handler, which validates the body and applies the
   remaining options (`content_policy`, `filtered`, `missing_images`, ...).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .options import (
    Format,
    OptionError,
    Options,
    check_format,
    parse_options,
    redact_options,
)
from .state import SimulatorState, state_of
from .stats import (
    CallRecord,
    redact_headers,
    summarize_form,
    summarize_json,
    summarize_raw,
)

logger = logging.getLogger("simulator")

HANG_SECONDS = 600.0
# Starlette's default limit per multipart part is 1 MiB. Stability accepts
# 10 MiB bodies, so one part may be as large as the whole body.
MAX_PART_BYTES = 10 * 1024 * 1024
_DISCONNECT_POLL_SECONDS = 0.25

# A JSON document cut off in the middle, as if a proxy truncated the body.
MALFORMED_BODY = b'{"created": 1700000000, "data": [{"b64_json": "iVBORw0KGgoAAAANSUhE'
HTML_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n"
    b"<body><h1>Service Unavailable</h1><p>The upstream server is down for "
    b"maintenance. Please try again later.</p></body></html>\n"
)


@dataclass
class Call:
    """One request to a provider route, after its options were parsed."""

    request: Request
    body: bytes
    options: Options
    record: CallRecord
    state: SimulatorState

    def public_url(self, path: str) -> str:
        """Return an absolute URL on this server for a path such as `/files/x.png`."""
        return str(self.request.base_url).rstrip("/") + path


class ProviderFormat(ABC):
    """Error bodies and credential rules of one provider wire format."""

    format: Format

    @abstractmethod
    def read_credential(self, headers: Headers) -> str | None:
        """Return the credential sent with the request, or None when it is missing."""

    @abstractmethod
    def unauthorized(self, request: Request, credential_present: bool) -> Response:
        """Build the format's 401 response."""

    @abstractmethod
    def error(self, request: Request, status: int, message: str) -> Response:
        """Build the format's error response for an HTTP status."""

    @abstractmethod
    def rate_limited(self, request: Request, retry_after: int) -> Response:
        """Build the format's 429 response with a `Retry-After` header."""

    def success_media_type(self, request: Request) -> str:
        """Return the media type a success would have, used by the broken bodies."""
        return "application/json"


Handler = Callable[[Call], Awaitable[Response]]


def read_bearer_token(headers: Headers, name: str = "authorization") -> str | None:
    """Return the token of an `Authorization: Bearer <token>` header, if any."""
    scheme, _, token = headers.get(name, "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def handle_call(
    request: Request, provider: ProviderFormat, handler: Handler
) -> Response:
    """Run a provider request through the shared steps, then through `handler`."""
    segment = request.path_params.get("options", "")
    try:
        options = parse_options(segment)
        check_format(options, provider.format)
    except OptionError as error:
        logger.warning("Rejected options '%s': %s", redact_options(segment), error)
        return provider.error(request, 400, str(error))
    try:
        call = await _record_call(request, provider, options)
        response = await _respond(call, provider, handler)
        if response is None:
            logger.info("Client disconnected, no response sent for %s", _describe(call))
            return Response(status_code=503)
        call.record.status = response.status_code
        logger.debug("%s -> %d", _describe(call), response.status_code)
        return response
    finally:
        await request.close()


async def _record_call(
    request: Request, provider: ProviderFormat, options: Options
) -> Call:
    body = await request.body()
    credential = provider.read_credential(request.headers)
    matched = None
    if options.key is not None:
        matched = credential is not None and hmac.compare_digest(
            credential.encode(), options.key.encode()
        )
    segment = request.path_params.get("options", "")
    path = request.url.path
    if segment:
        path = path.replace(segment, redact_options(segment), 1)
    record = state_of(request).stats.record(
        options.tag,
        {
            "method": request.method,
            "path": path,
            "format": provider.format.value,
            "headers": redact_headers(request.headers),
            "credential_present": credential is not None,
            "credential_matched": matched,
            "body": await _summarize_body(request, body),
        },
    )
    return Call(request, body, options, record, state_of(request))


async def _respond(
    call: Call, provider: ProviderFormat, handler: Handler
) -> Response | None:
    options, request = call.options, call.request
    wait_seconds = HANG_SECONDS if options.hang else options.delay_ms / 1000
    if wait_seconds > 0 and not await sleep_unless_disconnected(request, wait_seconds):
        return None
    if not call.record.credential_present:
        return provider.unauthorized(request, credential_present=False)
    if call.record.credential_matched is False:
        return provider.unauthorized(request, credential_present=True)
    fault = _status_fault(call, provider)
    if fault is not None:
        return fault
    broken = _broken_body(call, provider)
    if broken is not None:
        return broken
    return await handler(call)


def _status_fault(call: Call, provider: ProviderFormat) -> Response | None:
    options, request = call.options, call.request
    if options.fail is not None:
        message = f"Simulated failure: the base URL sets fail={options.fail}."
        return provider.error(request, options.fail, message)
    if call.record.sequence <= options.fail_first:
        message = (
            f"Simulated failure {call.record.sequence} of {options.fail_first} "
            f"for tag '{options.tag}' (fail_first={options.fail_first})."
        )
        return provider.error(request, 500, message)
    if options.rate_limit is not None:
        return provider.rate_limited(request, options.rate_limit)
    return None


def _broken_body(call: Call, provider: ProviderFormat) -> Response | None:
    options = call.options
    media_type = provider.success_media_type(call.request)
    if options.malformed:
        return Response(MALFORMED_BODY, media_type=media_type)
    if options.empty:
        return Response(b"", media_type=media_type)
    if options.html:
        return Response(HTML_BODY, media_type="text/html; charset=utf-8")
    return None


async def sleep_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep for `seconds` and return True, or return False once the client
    disconnects."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        await asyncio.sleep(min(remaining, _DISCONNECT_POLL_SECONDS))
        if await request.is_disconnected():
            return False


async def read_form(request: Request) -> FormData | None:
    """Parse a multipart body once per request, or return None if it is invalid."""
    try:
        return await request.form(max_part_size=MAX_PART_BYTES)
    except HTTPException:
        # Starlette turns every multipart parse error into a 400 HTTPException.
        return None


async def _summarize_body(request: Request, body: bytes) -> Any:
    content_type = request.headers.get("content-type")
    if not body:
        return None
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        form = await read_form(request)
        if form is None:
            return summarize_raw(content_type, body)
        return summarize_form(form)
    try:
        return summarize_json(json.loads(body))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return summarize_raw(content_type, body)


def _describe(call: Call) -> str:
    return (
        f"tag={call.options.tag} #{call.record.sequence} "
        f"{call.record.method} {call.record.path}"
    )
