"""midjourney-proxy wire format (novicezk/midjourney-proxy v2.6.3): imagine,
fetch and list-by-condition.

Submit endpoints always respond with HTTP 200 and report the outcome in `code`.
HTTP errors that the proxy's Spring Boot server produces itself (bad JSON, or
the simulated `fail` and `rate_limit` faults) use Spring Boot's default error
body. A missing or wrong `mj-api-secret` gets 401 with an empty body.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .calls import Call, ProviderFormat
from .images import caption_from_prompt, render_grid, render_image
from .options import Format
from .tasks import (
    IN_PROGRESS,
    NOT_START,
    SUBMITTED,
    SUCCESS,
    Task,
    TaskBehaviour,
    epoch_ms,
)

SECRET_HEADER = "mj-api-secret"
# Each grid tile is 512 pixels on its long side, so a square grid is 1024x1024.
TILE_LONG_SIDE = 512
TILE_STEP = 8
_ASPECT_PATTERN = re.compile(r"--(?:ar|aspect)\s+(\d+)\s*:\s*(\d+)")

CODE_SUCCESS = 1
CODE_VALIDATION_ERROR = 4
CODE_QUEUED = 22
CODE_BANNED_PROMPT = 24


class MidjourneyFormat(ProviderFormat):
    """Credential rules and error bodies of midjourney-proxy."""

    format = Format.MIDJOURNEY

    def read_credential(self, headers: Headers) -> str | None:
        return headers.get(SECRET_HEADER, "").strip() or None

    def unauthorized(self, request: Request, credential_present: bool) -> Response:
        return Response(status_code=401)

    def error(self, request: Request, status: int, message: str) -> Response:
        if status == 401:
            return Response(status_code=401)
        return spring_error(request, status, message)

    def rate_limited(self, request: Request, retry_after: int) -> Response:
        message = f"Too many requests. Retry after {retry_after} seconds."
        return spring_error(request, 429, message, {"retry-after": str(retry_after)})


def spring_error(
    request: Request,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build Spring Boot's default error body for the request path.

    Spring Boot leaves out `message` unless configured to include it. The
    simulator always includes it so that tests can read the reason.
    """
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown Status"
    body = {
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "status": status,
        "error": reason,
        "message": message,
        "path": _route_path(request),
    }
    return JSONResponse(body, status_code=status, headers=headers)


async def submit_imagine(call: Call) -> Response:
    """Handle `POST /mj/submit/imagine`."""
    payload = _json_object(call.body)
    if payload is None:
        return spring_error(call.request, 400, "Request body must be a JSON object.")
    problem = _validate_imagine(payload)
    if problem is not None:
        return _submit_result(CODE_VALIDATION_ERROR, problem)
    prompt: str = payload["prompt"]
    if call.options.content_policy:
        words = prompt.split()
        properties = {"promptEn": prompt, "bannedWord": words[0] if words else ""}
        return _submit_result(CODE_BANNED_PROMPT, "Banned prompt", None, properties)
    task = _create_task(call, prompt, payload.get("state"))
    if call.options.mj_queued:
        description = "In queue, there are 1 tasks ahead"
        return _submit_result(CODE_QUEUED, description, task.id, {"numberOfQueues": 1})
    return _submit_result(CODE_SUCCESS, "Submit success", task.id)


async def fetch_task(call: Call) -> Response:
    """Handle `GET /mj/task/{id}/fetch`. An unknown id gets 200 with no body."""
    task = call.state.tasks.get(call.request.path_params["task_id"])
    if task is None:
        return Response(status_code=200)
    _poll(call, task)
    return JSONResponse(task.to_json())


async def list_by_condition(call: Call) -> Response:
    """Handle `POST /mj/task/list-by-condition` with `{"ids": [...]}`.

    Every listed task counts as one poll, as a fetch does. Unknown ids are left out.
    """
    payload = _json_object(call.body)
    ids = None if payload is None else payload.get("ids")
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        return spring_error(
            call.request, 400, 'Request body must be {"ids": [string, ...]}.'
        )
    tasks = [task for task in map(call.state.tasks.get, ids) if task is not None]
    for task in tasks:
        _poll(call, task)
    return JSONResponse([task.to_json() for task in tasks])


def _submit_result(
    code: int,
    description: str,
    result: str | None = None,
    properties: dict[str, Any] | None = None,
) -> JSONResponse:
    body = {
        "code": code,
        "description": description,
        "result": result,
        "properties": properties or {},
    }
    return JSONResponse(body)


def _validate_imagine(payload: dict[str, Any]) -> str | None:
    """Return midjourney-proxy's validation message, or None for a valid body."""
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt must not be empty"
    state = payload.get("state")
    if state is not None and not isinstance(state, str):
        return "state must be a string"
    images = payload.get("base64Array")
    if images is None:
        return None
    if not isinstance(images, list) or not all(_is_data_url(item) for item in images):
        return "base64 format error: expected data:image/...;base64,... items"
    return None


def _is_data_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("data:") and ";base64," in value


def _create_task(call: Call, prompt: str, state: str | None) -> Task:
    options = call.options
    behaviour = TaskBehaviour(
        steps=options.mj_steps,
        stuck=options.mj_stuck,
        fail=options.mj_fail,
        queued=options.mj_queued,
        missing_image=options.missing_images,
        url_ttl=options.url_ttl,
    )
    task = Task(
        id=call.state.tasks.new_id(),
        prompt=prompt,
        state=state,
        behaviour=behaviour,
        submit_time=epoch_ms(),
        status=NOT_START if options.mj_queued else SUBMITTED,
    )
    call.state.tasks.add(task)
    return task


def _poll(call: Call, task: Task) -> None:
    previous = task.status
    status = task.poll()
    if status == previous and status != IN_PROGRESS:
        return
    if status == IN_PROGRESS:
        task.image_url = _preview_url(call, task)
    elif status == SUCCESS and not task.behaviour.missing_image:
        task.image_url = _grid_url(call, task)


def _grid_url(call: Call, task: Task) -> str:
    width, height = tile_size(task.prompt)
    data = render_grid(width, height, caption_from_prompt(task.prompt))
    name = call.state.files.add(data, "image/png", task.behaviour.url_ttl)
    return call.public_url(f"/files/{name}")


def _preview_url(call: Call, task: Task) -> str:
    # While running, midjourney-proxy reports Discord's blurred progress image.
    width, height = tile_size(task.prompt)
    caption = f"{task.progress} {caption_from_prompt(task.prompt)}"
    data = render_image(width, height, caption, 0, "png", blurred=True)
    name = call.state.files.add(data, "image/png", task.behaviour.url_ttl)
    return call.public_url(f"/files/{name}")


def tile_size(prompt: str) -> tuple[int, int]:
    """Return one grid tile's size, from the prompt's `--ar W:H` (default 1:1)."""
    match = _ASPECT_PATTERN.search(prompt)
    ratio_width, ratio_height = (1, 1) if match is None else map(int, match.groups())
    if ratio_width <= 0 or ratio_height <= 0:
        return TILE_LONG_SIDE, TILE_LONG_SIDE
    short_side = (
        TILE_LONG_SIDE * min(ratio_width, ratio_height) / max(ratio_width, ratio_height)
    )
    short_side = max(TILE_STEP, round(short_side / TILE_STEP) * TILE_STEP)
    if ratio_width >= ratio_height:
        return TILE_LONG_SIDE, short_side
    return short_side, TILE_LONG_SIDE


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _route_path(request: Request) -> str:
    """Return the request path without the `/s/<options>` prefix."""
    path, prefix = request.url.path, request.scope.get("root_path", "")
    return path[len(prefix) :] if prefix and path.startswith(prefix) else path
