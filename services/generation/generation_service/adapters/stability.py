"""Stability AI's v2beta text-to-image endpoints
(`POST {base}/v2beta/stable-image/generate/{ultra,core,sd3}`).

The body must be multipart/form-data, even without a file. `Accept` must be
`image/*` (raw image bytes, finish reason in the `finish-reason` header) or
`application/json` (base64 in `image`, finish reason in `finish_reason`),
because the service rejects httpx's default `*/*`. Both response forms are
read. One call makes one image.

The endpoint has no size parameter, only nine aspect ratios at about one
megapixel. The requested size is mapped to the nearest ratio, and the image is
then scaled and centre-cropped to exactly the requested size, so a client gets
the size it asked for whichever provider served it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from fractions import Fraction
from typing import Any

import httpx
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

GENERATE_PATH = "/v2beta/stable-image/generate"
ENDPOINTS = ("ultra", "core", "sd3")
# Used when neither the request nor the provider's `models` names an endpoint:
# the general-purpose endpoint, cheaper than ultra.
DEFAULT_ENDPOINT = "core"
# Model names that select an endpoint, besides the endpoint names themselves.
ENDPOINT_ALIASES = {"stable-image-ultra": "ultra", "stable-image-core": "core"}
# Models of the sd3 endpoint, sent in its `model` field.
SD3_MODEL_PREFIX = "sd3"

ACCEPT_IMAGE = "image/*"
ACCEPT_JSON = "application/json"

# The supported aspect ratios, widest first. A tie between two goes to the wider.
ASPECT_RATIOS = ("21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21")

FILTERED = "CONTENT_FILTERED"
SUCCESS = "SUCCESS"
# Error names with which Stability rejects a prompt on content grounds.
CONTENT_POLICY_NAMES = frozenset({"content_moderation", "public_figure"})
# Error messages about the body's encoding or the Accept header.
ENVELOPE_ERROR_PREFIXES = ("content-type:", "accept:")


class StabilityAdapter:
    """Calls Stability's generate endpoints. `accept` selects the response form."""

    def __init__(self, *, accept: str = ACCEPT_IMAGE) -> None:
        if accept not in (ACCEPT_IMAGE, ACCEPT_JSON):
            raise ValueError(f"accept must be {ACCEPT_IMAGE} or {ACCEPT_JSON}")
        self.accept = accept

    def max_images_per_call(self, target: ProviderTarget, model: str | None) -> int:
        return 1

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
        if call.n != 1:
            raise ValueError(f"a Stability call makes 1 image, not {call.n}")
        width, height = parse_size(call.size)
        aspect_ratio = nearest_aspect_ratio(width, height)
        endpoint, sd3_model = choose_endpoint(call.model, target.models)

        fields = {
            "prompt": call.prompt,
            "aspect_ratio": aspect_ratio,
            "output_format": "png",
        }
        if sd3_model is not None:
            fields["model"] = sd3_model
        response = await self._post(client, target, endpoint, fields, timeout)
        if response.status_code != 200:
            raise failure_from_response(response)

        data = read_image(response)
        resized = await asyncio.to_thread(fit_to_size, data, width, height)
        notes = {"aspectRatio": aspect_ratio, "endpoint": endpoint}
        if resized is not None:
            notes["resizedFrom"] = resized[1]
            data = resized[0]
        return ProviderResult(images=[ProviderImage(data=data)], notes=notes)

    async def _post(
        self,
        client: httpx.AsyncClient,
        target: ProviderTarget,
        endpoint: str,
        fields: dict[str, str],
        timeout: float,
    ) -> httpx.Response:
        url = f"{target.base_url}{GENERATE_PATH}/{endpoint}"
        headers = {"Authorization": f"Bearer {target.api_key}", "Accept": self.accept}
        # A (None, value) part is a plain form field. Passing the fields as
        # `files` makes httpx send multipart/form-data, because Stability
        # rejects the URL-encoded form that `data` would send.
        parts = {name: (None, value) for name, value in fields.items()}
        try:
            return await client.post(url, files=parts, headers=headers, timeout=timeout)
        except TRANSPORT_ERRORS as error:
            raise call_failure(error, timeout) from error


def parse_size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def nearest_aspect_ratio(width: int, height: int) -> str:
    """Return the supported aspect ratio nearest to `width:height`.

    Distance is the factor between the two ratios (the larger over the smaller),
    which treats portrait and landscape alike. It is computed exactly, so a tie
    is a true tie, and it goes to the ratio listed first (the wider).
    """
    requested = Fraction(width, height)
    best, best_distance = ASPECT_RATIOS[0], None
    for candidate in ASPECT_RATIOS:
        ratio_width, ratio_height = candidate.split(":")
        ratio = Fraction(int(ratio_width), int(ratio_height))
        distance = max(requested / ratio, ratio / requested)
        if best_distance is None or distance < best_distance:
            best, best_distance = candidate, distance
    return best


def choose_endpoint(
    model: str | None, provider_models: tuple[str, ...]
) -> tuple[str, str | None]:
    """Return the endpoint and, for sd3, the model to send.

    The request's model wins, then the provider's first model, then `core`.
    """
    name = model or (provider_models[0] if provider_models else DEFAULT_ENDPOINT)
    name = ENDPOINT_ALIASES.get(name, name)
    if name in ENDPOINTS:
        return name, None
    if name.startswith(SD3_MODEL_PREFIX):
        return "sd3", name
    # NOTE: another provider may offer this model, so the request moves on.
    raise ProviderFailure(
        "error",
        f"model {name!r} is not a Stability endpoint (ultra, core, sd3) or an "
        "sd3 model",
    )


def read_image(response: httpx.Response) -> bytes:
    """Return the image of a 200 response in either form, or raise.

    A `CONTENT_FILTERED` finish reason means that moderation blurred the image:
    that is a content-policy refusal, not a result.
    """
    content_type = response.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        encoded, finish_reason = _read_json(response)
        data = _decode(encoded)
    elif content_type.startswith("image/"):
        data = response.content
        finish_reason = response.headers.get("finish-reason", SUCCESS)
    else:
        raise ProviderFailure(
            "error",
            f"response is neither an image nor JSON ({content_type or 'no type'}, "
            f"{len(response.content)} bytes)",
            status_code=200,
        )
    if finish_reason == FILTERED:
        raise ProviderFailure(
            "content_policy",
            "Stability's moderation filtered the generated image",
            status_code=200,
            code="content_filtered",
        )
    if finish_reason != SUCCESS:
        raise ProviderFailure(
            "error", f"generation ended with {finish_reason}", status_code=200
        )
    if not data:
        raise ProviderFailure("error", "response carries no image", status_code=200)
    return data


def _read_json(response: httpx.Response) -> tuple[Any, Any]:
    try:
        body = response.json()
    except ValueError as error:
        raise ProviderFailure(
            "error",
            f"response is not valid JSON ({len(response.content)} bytes)",
            status_code=200,
        ) from error
    if not isinstance(body, dict):
        raise ProviderFailure(
            "error", "response JSON is not an object", status_code=200
        )
    return body.get("image"), body.get("finish_reason", SUCCESS)


def _decode(encoded: Any) -> bytes:
    if not isinstance(encoded, str) or not encoded:
        raise ProviderFailure("error", "response carries no image", status_code=200)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ProviderFailure(
            "error", "image is not valid base64", status_code=200
        ) from error


def fit_to_size(data: bytes, width: int, height: int) -> tuple[bytes, str] | None:
    """Scale and centre-crop an image to `width`x`height`, encoded as PNG.

    Returns the new bytes and the original size, or None when the image already
    has that size. Blocking: run it in a worker thread.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            original = f"{image.width}x{image.height}"
            if image.size == (width, height):
                return None
            # Palette images only resize with nearest-neighbour sampling.
            has_alpha = "A" in image.getbands() or "transparency" in image.info
            source = image.convert("RGBA" if has_alpha else "RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ProviderFailure(
            "error", f"response is not a readable image: {error}", status_code=200
        ) from None

    # Scale so that the image covers the target, then cut the overflow evenly
    # from both sides.
    scale = max(width / source.width, height / source.height)
    scaled_width = max(width, round(source.width * scale))
    scaled_height = max(height, round(source.height * scale))
    left = (scaled_width - width) // 2
    top = (scaled_height - height) // 2
    scaled = source.resize((scaled_width, scaled_height), Image.Resampling.LANCZOS)
    fitted = scaled.crop((left, top, left + width, top + height))
    output = io.BytesIO()
    fitted.save(output, format="PNG")
    return output.getvalue(), original


def failure_from_response(response: httpx.Response) -> ProviderFailure:
    """Map a non-200 response, whose body is `{id, name, errors[]}`, to a failure."""
    status = response.status_code
    name, message = _error_fields(response)
    if status == 429:
        return ProviderFailure(
            "rate_limited",
            message,
            status_code=status,
            retry_after_seconds=retry_after_seconds(response),
        )
    if name in CONTENT_POLICY_NAMES:
        return ProviderFailure("content_policy", message, status_code=status, code=name)
    if (
        status < 400
        or status >= 500
        or status in (401, 403, 404, 408)
        or _is_envelope_error(message)
    ):
        # The provider is down or misconfigured, or responded with a redirect,
        # which is never followed: another provider may serve it.
        return ProviderFailure("error", message, status_code=status)
    return ProviderFailure("invalid_request", message, status_code=status, code=name)


def _is_envelope_error(message: str) -> bool:
    """Tell whether a 400 concerns the request's encoding rather than its fields.

    Such a rejection is the router's fault, not the caller's, so the request
    moves on to the next provider instead of failing as invalid.
    """
    return message.startswith(ENVELOPE_ERROR_PREFIXES)


def _error_fields(response: httpx.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return None, f"HTTP {response.status_code}"
    name = body.get("name")
    errors = body.get("errors")
    texts = [str(item) for item in errors] if isinstance(errors, list) else []
    message = "; ".join(texts) or str(name or f"HTTP {response.status_code}")
    return (str(name) if name else None), message[:300]
