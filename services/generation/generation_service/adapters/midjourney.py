"""Midjourney through the API of midjourney-proxy, the open-source relay by
novicezk, which other relays copy.

A call submits `POST {base}/mj/submit/imagine` with the `mj-api-secret` header,
then polls `GET {base}/mj/task/{id}/fetch` until the task ends, within the
provider's timeout. Submit always returns HTTP 200 with a `code`. Codes 1
(accepted), 22 (queued) and 21 (the task exists) carry a task id, 24 is a
banned prompt, and every other code is a provider error.

A finished task has one 2x2 grid image. It is downloaded through the router's
URL guard and cut into four images, numbered left to right and top to bottom
as Midjourney numbers them (U1 to U4). A call for n images (1 to 4) keeps the
first n, so one imagine call serves up to 4 images. Tiles keep the provider's
resolution, and the requested size only sets the aspect ratio (`--ar`).
"""

from __future__ import annotations

import asyncio
import io
import math
from typing import Any

import httpx
import structlog
from PIL import Image, UnidentifiedImageError

from generation_service.adapters.base import (
    TRANSPORT_ERRORS,
    ImageFetcher,
    ProgressCallback,
    ProviderCall,
    ProviderFailure,
    ProviderImage,
    ProviderResult,
    ProviderTarget,
    call_failure,
    retry_after_seconds,
)

log = structlog.get_logger(__name__)

SECRET_HEADER = "mj-api-secret"
IMAGES_PER_TASK = 4

CODE_ACCEPTED = 1
CODE_EXISTS = 21
CODE_QUEUED = 22
CODE_BANNED_PROMPT = 24
ACCEPTED_CODES = frozenset({CODE_ACCEPTED, CODE_EXISTS, CODE_QUEUED})

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"

# Polling starts at `poll_interval` seconds and grows by this factor per poll
# up to `max_poll_interval`.
POLL_BACKOFF = 1.5
# Consecutive transient poll failures (no response, 429, 5xx) tolerated before
# the task is given up, so that one glitch does not lose a paid task.
MAX_POLL_ERRORS = 3


class MidjourneyAdapter:
    """Submits imagine tasks and polls them with backoff.

    `poll_interval` and `max_poll_interval` are in seconds. Real tasks take
    tens of seconds (an estimate, not measured here), so the defaults (0.5 and
    5) keep the poll count low without adding much delay. Tests pass shorter
    intervals.
    """

    def __init__(
        self, *, poll_interval: float = 0.5, max_poll_interval: float = 5.0
    ) -> None:
        if not 0 < poll_interval <= max_poll_interval:
            raise ValueError("need 0 < poll_interval <= max_poll_interval")
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval

    def max_images_per_call(self, target: ProviderTarget, model: str | None) -> int:
        return min(target.max_images_per_request, IMAGES_PER_TASK)

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
        """Run one imagine task; `timeout` bounds the submit and all polls."""
        if not 1 <= call.n <= IMAGES_PER_TASK:
            raise ValueError(f"a Midjourney call makes 1 to 4 images, not {call.n}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        prompt = prompt_with_aspect_ratio(call.prompt, call.size)

        task_id = await self._submit(client, target, prompt, timeout)
        grid_url = await self._wait(client, target, task_id, deadline, on_progress)
        grid = await fetch_image(grid_url)
        tiles = await asyncio.to_thread(split_grid, grid)
        images = [ProviderImage(data=tile) for tile in tiles[: call.n]]
        return ProviderResult(images=images, notes={"taskId": task_id})

    async def _submit(
        self,
        client: httpx.AsyncClient,
        target: ProviderTarget,
        prompt: str,
        timeout: float,
    ) -> str:
        url = f"{target.base_url}/mj/submit/imagine"
        response = await _request(
            client, "POST", url, target, timeout, json={"prompt": prompt}
        )
        if response.status_code != 200:
            raise failure_from_status(response)
        body = _json_object(response)
        code = body.get("code")
        description = str(body.get("description") or "")[:200]
        if code == CODE_BANNED_PROMPT:
            properties = body.get("properties")
            word = (
                properties.get("bannedWord") if isinstance(properties, dict) else None
            )
            reason = f" (banned word: {word})" if word else ""
            raise ProviderFailure(
                "content_policy",
                f"Midjourney rejected the prompt{reason}",
                status_code=200,
                code="banned_prompt",
            )
        if code not in ACCEPTED_CODES:
            raise ProviderFailure(
                "error",
                f"submit returned code {code!r}: {description or 'no description'}",
                status_code=200,
            )
        task_id = body.get("result")
        if not isinstance(task_id, str | int) or not str(task_id):
            raise ProviderFailure(
                "error", f"submit code {code} carries no task id", status_code=200
            )
        return str(task_id)

    async def _wait(
        self,
        client: httpx.AsyncClient,
        target: ProviderTarget,
        task_id: str,
        deadline: float,
        on_progress: ProgressCallback | None,
    ) -> str:
        """Poll the task until it ends and return its grid URL."""
        loop = asyncio.get_running_loop()
        url = f"{target.base_url}/mj/task/{task_id}/fetch"
        interval = self.poll_interval
        errors = 0
        reported = -1
        status = "SUBMITTED"
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ProviderFailure(
                    "timeout",
                    f"task {task_id} still {status} at {max(reported, 0)}% when "
                    "the provider's timeout ran out",
                )
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * POLL_BACKOFF, self.max_poll_interval)
            remaining = deadline - loop.time()
            if remaining <= 0:
                continue

            try:
                task = await self._fetch(client, target, url, remaining)
            except ProviderFailure as failure:
                errors += 1
                if not _is_transient(failure) or errors >= MAX_POLL_ERRORS:
                    raise
                log.warning(
                    "midjourney_poll_failed",
                    provider=target.name,
                    task_id=task_id,
                    error=failure.message,
                )
                continue
            errors = 0

            status = str(task.get("status") or "")
            percent = parse_progress(task.get("progress"))
            if on_progress is not None and percent is not None and percent > reported:
                reported = percent
                await _report_progress(on_progress, percent, target, task_id)
            if status == SUCCESS:
                return _grid_url(task, task_id)
            if status == FAILURE:
                reason = str(task.get("failReason") or "no reason given")[:300]
                raise ProviderFailure(
                    "error", f"task {task_id} ended in {status}: {reason}"
                )

    async def _fetch(
        self,
        client: httpx.AsyncClient,
        target: ProviderTarget,
        url: str,
        timeout: float,
    ) -> dict[str, Any]:
        response = await _request(client, "GET", url, target, timeout)
        if response.status_code != 200:
            raise failure_from_status(response)
        if not response.content.strip():
            # midjourney-proxy returns an empty 200 for an unknown task id.
            raise ProviderFailure(
                "error", "task not found by the provider", status_code=200
            )
        return _json_object(response)


async def _request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    target: ProviderTarget,
    timeout: float,
    **arguments: Any,
) -> httpx.Response:
    headers = {SECRET_HEADER: target.api_key}
    try:
        return await client.request(
            method, url, headers=headers, timeout=timeout, **arguments
        )
    except TRANSPORT_ERRORS as error:
        raise call_failure(error, timeout) from error


async def _report_progress(
    on_progress: ProgressCallback, percent: int, target: ProviderTarget, task_id: str
) -> None:
    # Progress is informational: a failure to record it must not end the task.
    try:
        await on_progress(percent)
    except Exception as error:
        log.warning(
            "progress_update_failed",
            provider=target.name,
            task_id=task_id,
            error=f"{type(error).__name__}: {error}",
        )


def _is_transient(failure: ProviderFailure) -> bool:
    """Tell whether a failed poll may succeed when repeated: no response, 429 or
    5xx. A 4xx or an unreadable 200 would only repeat itself."""
    status = failure.status_code
    return status is None or status == 429 or status >= 500


def prompt_with_aspect_ratio(prompt: str, size: str) -> str:
    """Append `--ar W:H` for a size that is not square.

    A prompt that sets `--ar` or `--aspect` itself keeps its own ratio.
    """
    width, _, height = size.partition("x")
    w, h = int(width), int(height)
    if w == h or "--ar " in prompt or "--aspect " in prompt:
        return prompt
    divisor = math.gcd(w, h)
    return f"{prompt} --ar {w // divisor}:{h // divisor}"


def parse_progress(value: Any) -> int | None:
    """Read the proxy's progress string ("45%") as an integer percent."""
    if not isinstance(value, str) or not value.endswith("%"):
        return None
    try:
        return max(0, min(100, int(float(value[:-1]))))
    except ValueError:
        return None


def split_grid(data: bytes) -> list[bytes]:
    """Cut a 2x2 grid into four PNG images, top-left first, row by row.

    Blocking: run it in a worker thread.
    """
    try:
        with Image.open(io.BytesIO(data)) as grid:
            grid.load()
            width, height = grid.width // 2, grid.height // 2
            if width == 0 or height == 0:
                raise ProviderFailure(
                    "error", f"grid image is too small ({grid.width}x{grid.height})"
                )
            boxes = [
                (column * width, row * height, (column + 1) * width, (row + 1) * height)
                for row in range(2)
                for column in range(2)
            ]
            tiles = [grid.crop(box) for box in boxes]
    except (UnidentifiedImageError, OSError) as error:
        raise ProviderFailure(
            "error", f"grid is not a readable image: {error}"
        ) from None

    encoded = []
    for tile in tiles:
        output = io.BytesIO()
        tile.save(output, format="PNG")
        encoded.append(output.getvalue())
    return encoded


def failure_from_status(response: httpx.Response) -> ProviderFailure:
    """Map an HTTP error of the proxy (Spring Boot's error body, or none)."""
    status = response.status_code
    message = f"HTTP {status}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        message = f"HTTP {status}: {str(body['message'])[:300]}"
    if status == 429:
        return ProviderFailure(
            "rate_limited",
            message,
            status_code=status,
            retry_after_seconds=retry_after_seconds(response),
        )
    # Every other HTTP error is the proxy's or the router's, never the caller's:
    # submit reports invalid prompts through its `code`.
    return ProviderFailure("error", message, status_code=status)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as error:
        content_type = response.headers.get("content-type") or "no content type"
        raise ProviderFailure(
            "error",
            f"response is not valid JSON ({content_type}, "
            f"{len(response.content)} bytes)",
            status_code=200,
        ) from error
    if not isinstance(body, dict):
        raise ProviderFailure(
            "error", "response JSON is not an object", status_code=200
        )
    return body


def _grid_url(task: dict[str, Any], task_id: str) -> str:
    url = task.get("imageUrl")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ProviderFailure(
            "error", f"task {task_id} succeeded without an image URL", status_code=200
        )
    return url
