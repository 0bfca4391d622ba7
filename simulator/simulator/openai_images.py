"""OpenAI Images wire format: `POST /v1/images/generations` and `GET /v1/models`."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .calls import Call, ProviderFormat, read_bearer_token
from .images import caption_from_prompt, render_image, render_image_base64
from .openai_rules import (
    IMAGE_MODELS,
    GenerationRequest,
    OpenAIError,
    validate_generation,
)
from .options import Format
from .stats import RATE_WINDOW_SECONDS

# The simulator's own request budget, reported in the x-ratelimit-*-requests
# headers. It is large so that benchmarks never see it run out. The `rate_limit`
# option is the way to get a 429.
REQUEST_LIMIT_PER_WINDOW = 100_000
API_VERSION = "2020-10-01"
MODEL_CREATED = 1_698_785_189

# Simulated output tokens per 1024 pixels, by quality. These are the
# simulator's own numbers, not OpenAI's pricing table.
OUTPUT_TOKENS_PER_KILOPIXEL = {"low": 0.25, "medium": 1.0, "high": 4.0}
REPORTED_QUALITY = {"low": "low", "medium": "medium", "high": "high", "auto": "high"}

_SERVER_ERROR_MESSAGE = (
    "The server had an error while processing your request. Retry your request."
)


class OpenAIFormat(ProviderFormat):
    """Credential rules and error bodies of the OpenAI API."""

    format = Format.OPENAI

    def read_credential(self, headers: Headers) -> str | None:
        return read_bearer_token(headers)

    def unauthorized(self, request: Request, credential_present: bool) -> Response:
        # NOTE: the real type and code of OpenAI's 401 bodies are not confirmed.
        # Only the "Incorrect API key provided" start of the message is.
        if credential_present:
            error = OpenAIError(
                "Incorrect API key provided. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                status=401,
                code="invalid_api_key",
            )
        else:
            error = OpenAIError(
                "You didn't provide an API key. Send it in the Authorization header "
                "as 'Authorization: Bearer YOUR_KEY'.",
                status=401,
            )
        return error_response(error)

    def error(self, request: Request, status: int, message: str) -> Response:
        if status >= 500:
            message = f"{_SERVER_ERROR_MESSAGE} {message}"
        error = OpenAIError(
            message,
            status=status,
            error_type=_error_type(status),
            code=_error_code(status),
        )
        return error_response(error)

    def rate_limited(self, request: Request, retry_after: int) -> Response:
        # NOTE: the OpenAPI description fixes only the 429 status, the
        # ErrorResponse shape and Retry-After. The type "requests" with code
        # "rate_limit_exceeded" is not confirmed.
        error = OpenAIError(
            f"Rate limit reached for requests. Please try again in {retry_after}s.",
            status=429,
            error_type="requests",
            code="rate_limit_exceeded",
        )
        headers = {
            "retry-after": str(retry_after),
            "x-ratelimit-limit-requests": str(REQUEST_LIMIT_PER_WINDOW),
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{retry_after}s",
        }
        return error_response(error, headers)


def error_response(
    error: OpenAIError, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {
        "error": {
            "message": error.message,
            "type": error.error_type,
            "param": error.param,
            "code": error.code,
        }
    }
    all_headers = {"x-request-id": _request_id(), **(headers or {})}
    return JSONResponse(body, status_code=error.status, headers=all_headers)


async def create_image(call: Call) -> Response:
    """Handle `POST /v1/images/generations`."""
    started = time.perf_counter()
    try:
        payload = json.loads(call.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return error_response(
            OpenAIError(
                "The request body is not valid JSON. Send a JSON object with "
                "Content-Type: application/json."
            )
        )
    try:
        generation = validate_generation(payload)
    except OpenAIError as error:
        return error_response(error)
    if call.options.content_policy:
        return error_response(_content_policy_error(generation))
    count = generation.n - 1 if call.options.missing_images else generation.n
    if generation.stream:
        return StreamingResponse(
            _stream_events(generation, count),
            media_type="text/event-stream",
            headers=_success_headers(call, started),
        )
    body = _images_body(call, generation, count)
    return JSONResponse(body, headers=_success_headers(call, started))


async def list_models(call: Call) -> Response:
    """Handle `GET /v1/models` with the image models that the simulator serves."""
    models = [
        {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": "system"}
        for model in IMAGE_MODELS
    ]
    return JSONResponse(
        {"object": "list", "data": models},
        headers=_success_headers(call, time.perf_counter()),
    )


def _content_policy_error(generation: GenerationRequest) -> OpenAIError:
    suffix = "(Simulated: the base URL sets content_policy.)"
    if generation.is_gpt_image:
        # GPT image models report moderation with their own type and code.
        return OpenAIError(
            f"Your request was rejected by the safety system. {suffix}",
            error_type="image_generation_user_error",
            code="moderation_blocked",
        )
    return OpenAIError(
        f"Your request was rejected as a result of our safety system. {suffix}",
        code="content_policy_violation",
    )


def _images_body(call: Call, generation: GenerationRequest, count: int) -> dict:
    data = [_image_item(call, generation, index) for index in range(count)]
    body: dict[str, Any] = {"created": int(time.time()), "data": data}
    if generation.is_gpt_image:
        body.update(_gpt_image_fields(generation))
        body["usage"] = _usage(generation, count)
    return body


def _image_item(call: Call, generation: GenerationRequest, index: int) -> dict:
    caption = caption_from_prompt(generation.prompt)
    render_arguments = (
        generation.width,
        generation.height,
        caption,
        index,
        generation.output_format,
        generation.background == "transparent",
    )
    item: dict[str, Any] = {}
    if generation.response_format == "b64_json":
        item["b64_json"] = render_image_base64(*render_arguments)
    else:
        data = render_image(*render_arguments)
        name = call.state.files.add(data, "image/png", call.options.url_ttl)
        item["url"] = call.public_url(f"/files/{name}")
    if generation.model == "dall-e-3":
        item["revised_prompt"] = _revise_prompt(generation.prompt)
    return item


def _revise_prompt(prompt: str) -> str:
    return f"{prompt.strip()} Shown as a flat, brightly coloured illustration."


def _gpt_image_fields(generation: GenerationRequest) -> dict[str, str]:
    return {
        "background": generation.background,
        "output_format": generation.output_format,
        "size": f"{generation.width}x{generation.height}",
        "quality": REPORTED_QUALITY[generation.quality],
    }


def _usage(generation: GenerationRequest, count: int) -> dict[str, Any]:
    text_tokens = max(1, math.ceil(len(generation.prompt) / 4))
    quality = REPORTED_QUALITY[generation.quality]
    kilopixels = generation.width * generation.height / 1024
    per_image = math.ceil(kilopixels * OUTPUT_TOKENS_PER_KILOPIXEL[quality])
    output_tokens = per_image * count
    return {
        "input_tokens": text_tokens,
        "output_tokens": output_tokens,
        "total_tokens": text_tokens + output_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
        "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0},
    }


async def _stream_events(
    generation: GenerationRequest, count: int
) -> AsyncIterator[bytes]:
    caption = caption_from_prompt(generation.prompt)
    fields = _gpt_image_fields(generation)
    transparent = generation.background == "transparent"
    for index in range(count):
        size = (generation.width, generation.height)
        for partial_index in range(generation.partial_images):
            partial = render_image_base64(
                *size, caption, index, generation.output_format, transparent, True
            )
            yield _event(
                "image_generation.partial_image",
                {
                    "b64_json": partial,
                    **fields,
                    "partial_image_index": partial_index,
                },
            )
        final = render_image_base64(
            *size, caption, index, generation.output_format, transparent
        )
        usage = _usage(generation, 1)
        yield _event(
            "image_generation.completed", {"b64_json": final, **fields, "usage": usage}
        )


def _event(event_type: str, data: dict[str, Any]) -> bytes:
    payload = {"type": event_type, "created_at": int(time.time()), **data}
    return f"event: {event_type}\ndata: {json.dumps(payload)}\n\n".encode()


def _success_headers(call: Call, started: float) -> dict[str, str]:
    now = time.monotonic()
    tag_stats = call.state.stats.tag(call.options.tag)
    used = tag_stats.calls_in_window(now)
    oldest = tag_stats.recent_times[0] if tag_stats.recent_times else now
    reset_seconds = max(0.0, oldest + RATE_WINDOW_SECONDS - now)
    processing_ms = max(0, round((time.perf_counter() - started) * 1000))
    return {
        "x-request-id": _request_id(),
        "openai-version": API_VERSION,
        "openai-processing-ms": str(processing_ms),
        "x-ratelimit-limit-requests": str(REQUEST_LIMIT_PER_WINDOW),
        "x-ratelimit-remaining-requests": str(max(0, REQUEST_LIMIT_PER_WINDOW - used)),
        "x-ratelimit-reset-requests": go_duration(reset_seconds),
    }


def go_duration(seconds: float) -> str:
    """Format a duration the way Go prints one (`12ms`, `1.5s`, `6m0s`)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{round(rest, 3):g}s"


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def _error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    if status == 429:
        return "requests"
    return "invalid_request_error"


def _error_code(status: int) -> str | None:
    return {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
