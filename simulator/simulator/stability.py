"""Stability AI v2beta wire format: `POST /v2beta/stable-image/generate/<endpoint>`
for the ultra, core and sd3 endpoints.

Field rules follow Stability's OpenAPI description (v2beta, late-2024 snapshot).
Every error body has the v2beta shape `{"id", "name", "errors": [...]}`.
"""

from __future__ import annotations

import io
import math
import random
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus

from PIL import Image, UnidentifiedImageError
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .calls import Call, ProviderFormat, read_bearer_token, read_form
from .images import MEDIA_TYPES, caption_from_prompt, render_image, render_image_base64
from .options import Format

MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_PROMPT_CHARS = 10_000
MAX_SEED = 4_294_967_294
MIN_IMAGE_SIDE, MAX_IMAGE_SIDE = 64, 16_384
TARGET_PIXELS = 1024 * 1024
SIZE_STEP = 64

# Output size per aspect ratio: the SDXL sizes near one megapixel, in steps of
# 64 pixels. The real service uses about 1 MP for ultra and 1.5 MP for core,
# but the simulator uses these sizes for all three endpoints.
ASPECT_RATIO_SIZES: dict[str, tuple[int, int]] = {
    "21:9": (1536, 640),
    "16:9": (1344, 768),
    "3:2": (1216, 832),
    "5:4": (1152, 896),
    "1:1": (1024, 1024),
    "4:5": (896, 1152),
    "2:3": (832, 1216),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
STYLE_PRESETS = (
    "enhance",
    "anime",
    "photographic",
    "digital-art",
    "comic-book",
    "fantasy-art",
    "line-art",
    "analog-film",
    "neon-punk",
    "isometric",
    "low-poly",
    "origami",
    "modeling-compound",
    "cinematic",
    "3d-model",
    "pixel-art",
    "tile-texture",
)
SD3_MODELS = (
    "sd3.5-large",
    "sd3.5-large-turbo",
    "sd3.5-medium",
    "sd3-medium",
    "sd3-large",
    "sd3-large-turbo",
)
SD3_MODES = ("text-to-image", "image-to-image")
ACCEPT_IMAGE, ACCEPT_JSON = "image/*", "application/json"

OUTPUT_FORMATS = {
    "ultra": ("jpeg", "png", "webp"),
    "core": ("png", "jpeg", "webp"),
    "sd3": ("png", "jpeg"),
}

_ERROR_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "content_moderation",
    404: "not_found",
    413: "payload_too_large",
    422: "invalid_language",
    429: "rate_limit_exceeded",
    500: "internal_error",
}


class StabilityFormat(ProviderFormat):
    """Credential rules and error bodies of the Stability v2beta API."""

    format = Format.STABILITY

    def read_credential(self, headers: Headers) -> str | None:
        return read_bearer_token(headers)

    def unauthorized(self, request: Request, credential_present: bool) -> Response:
        # NOTE: Stability documents no v2beta 401 body. This one uses the v2beta
        # error shape with the name that its v1 API uses for the same status.
        reason = "invalid API key" if credential_present else "missing API key"
        return error_response(401, [f"authorization: {reason}"])

    def error(self, request: Request, status: int, message: str) -> Response:
        return error_response(status, [message])

    def rate_limited(self, request: Request, retry_after: int) -> Response:
        message = (
            "You have exceeded the rate limit of 150 requests within a 10 second "
            f"period. Retry after {retry_after} seconds."
        )
        return error_response(429, [message], {"retry-after": str(retry_after)})

    def success_media_type(self, request: Request) -> str:
        if _accept(request) == ACCEPT_JSON:
            return ACCEPT_JSON
        return "image/png"


def error_response(
    status: int, errors: list[str], headers: dict[str, str] | None = None
) -> JSONResponse:
    """Build a v2beta error with a new 32-hex id."""
    body = {"id": uuid.uuid4().hex, "name": _error_name(status), "errors": errors}
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class _Generation:
    """Validated multipart fields, with defaults filled in."""

    prompt: str = ""
    width: int = 1024
    height: int = 1024
    output_format: str = "png"
    seed: int = 0
    errors: list[str] = field(default_factory=list)


async def generate(call: Call) -> Response:
    """Handle `POST /v2beta/stable-image/generate/{endpoint}`."""
    endpoint = call.request.path_params["endpoint"]
    if endpoint not in OUTPUT_FORMATS:
        return error_response(
            404, [f"endpoint: '{endpoint}' is not one of ultra, core, sd3"]
        )
    rejection = _check_envelope(call)
    if rejection is not None:
        return rejection
    form = await read_form(call.request)
    if form is None:
        return error_response(400, ["body: invalid multipart/form-data"])
    generation = await _validate_fields(form, endpoint)
    if generation.errors:
        return error_response(400, generation.errors)
    if call.options.content_policy:
        return error_response(
            403,
            [
                "Your request was flagged by the content moderation system and was "
                "rejected, so you were not charged. (Simulated: the base URL sets "
                "content_policy.)"
            ],
        )
    return _success(call, generation)


def _check_envelope(call: Call) -> Response | None:
    if len(call.body) > MAX_BODY_BYTES:
        return error_response(413, ["body: payloads cannot be larger than 10MiB"])
    content_type = call.request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        return error_response(400, ["content-type: must be multipart/form-data"])
    if _accept(call.request) not in (ACCEPT_IMAGE, ACCEPT_JSON):
        return error_response(400, [f"accept: must be {ACCEPT_IMAGE} or {ACCEPT_JSON}"])
    return None


def _accept(request: Request) -> str:
    return request.headers.get("accept", "").strip() or ACCEPT_IMAGE


async def _validate_fields(form: FormData, endpoint: str) -> _Generation:
    generation = _Generation()
    errors = generation.errors
    prompt = _text(form, "prompt", errors)
    if not prompt:
        errors.append("prompt: is required")
    elif len(prompt) > MAX_PROMPT_CHARS:
        errors.append(f"prompt: must be at most {MAX_PROMPT_CHARS} characters")
    generation.prompt = prompt or ""
    negative = _text(form, "negative_prompt", errors)
    if negative is not None and len(negative) > MAX_PROMPT_CHARS:
        errors.append(f"negative_prompt: must be at most {MAX_PROMPT_CHARS} characters")
    aspect_ratio = _choice(form, "aspect_ratio", tuple(ASPECT_RATIO_SIZES), errors)
    generation.width, generation.height = ASPECT_RATIO_SIZES[aspect_ratio or "1:1"]
    generation.output_format = (
        _choice(form, "output_format", OUTPUT_FORMATS[endpoint], errors) or "png"
    )
    generation.seed = _seed(form, errors)
    if endpoint == "core":
        _choice(form, "style_preset", STYLE_PRESETS, errors)
    image_size = await _check_image_fields(form, endpoint, errors)
    if image_size is not None:
        generation.width, generation.height = _size_near_megapixel(*image_size)
    return generation


async def _check_image_fields(
    form: FormData, endpoint: str, errors: list[str]
) -> tuple[int, int] | None:
    """Check the image-to-image fields and return the input image size, if any."""
    if endpoint == "core":
        return None
    image_to_image = "image" in form
    if endpoint == "sd3":
        _choice(form, "model", SD3_MODELS, errors)
        _number(form, "cfg_scale", 1, 10, errors)
        mode = _choice(form, "mode", SD3_MODES, errors) or "text-to-image"
        image_to_image = mode == "image-to-image"
        if image_to_image and "image" not in form:
            errors.append("image: is required when mode is image-to-image")
    if not image_to_image:
        return None
    strength = _number(form, "strength", 0, 1, errors)
    if strength is None and "strength" not in form:
        errors.append("strength: is required when an image is provided")
    if "image" not in form:
        return None
    return await _image_size(form["image"], errors)


async def _image_size(
    upload: UploadFile | str, errors: list[str]
) -> tuple[int, int] | None:
    if not isinstance(upload, UploadFile):
        errors.append("image: must be a file")
        return None
    try:
        with Image.open(io.BytesIO(await upload.read())) as picture:
            width, height = picture.size
    except (UnidentifiedImageError, OSError):
        errors.append("image: is not a valid image")
        return None
    if not all(MIN_IMAGE_SIDE <= side <= MAX_IMAGE_SIDE for side in (width, height)):
        errors.append(
            f"image: width and height must be between {MIN_IMAGE_SIDE} and "
            f"{MAX_IMAGE_SIDE} pixels, got {width}x{height}"
        )
        return None
    return width, height


def _size_near_megapixel(width: int, height: int) -> tuple[int, int]:
    """Scale a size to about one megapixel, keeping its aspect ratio."""
    scale = math.sqrt(TARGET_PIXELS / (width * height))
    scaled_width = max(SIZE_STEP, round(width * scale / SIZE_STEP) * SIZE_STEP)
    scaled_height = max(SIZE_STEP, round(height * scale / SIZE_STEP) * SIZE_STEP)
    return scaled_width, scaled_height


def _text(form: FormData, name: str, errors: list[str]) -> str | None:
    value = form.get(name)
    if isinstance(value, UploadFile):
        errors.append(f"{name}: must be a text field, not a file")
        return None
    return value


def _choice(
    form: FormData, name: str, allowed: tuple[str, ...], errors: list[str]
) -> str | None:
    value = _text(form, name, errors)
    if value is None:
        return None
    if value not in allowed:
        errors.append(f"{name}: must be one of {', '.join(allowed)}")
        return None
    return value


def _number(
    form: FormData, name: str, minimum: float, maximum: float, errors: list[str]
) -> float | None:
    value = _text(form, name, errors)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not minimum <= number <= maximum:
        errors.append(f"{name}: must be a number between {minimum:g} and {maximum:g}")
        return None
    return number


def _seed(form: FormData, errors: list[str]) -> int:
    """Return the requested seed, or a random one when the seed is 0 or absent."""
    seed = _number(form, "seed", 0, MAX_SEED, errors)
    if seed is not None and not seed.is_integer():
        errors.append(f"seed: must be an integer between 0 and {MAX_SEED}")
        return 0
    if not seed:
        return random.randint(1, MAX_SEED)
    return int(seed)


def _success(call: Call, generation: _Generation) -> Response:
    filtered = call.options.filtered
    finish_reason = "CONTENT_FILTERED" if filtered else "SUCCESS"
    image_format = generation.output_format
    render_arguments = (
        generation.width,
        generation.height,
        caption_from_prompt(generation.prompt),
        0,
        image_format,
        False,
        filtered,
    )
    missing = call.options.missing_images
    request_id = uuid.uuid4().hex
    if _accept(call.request) == ACCEPT_JSON:
        body: dict[str, object] = {}
        if not missing:
            body["image"] = render_image_base64(*render_arguments)
        body.update(finish_reason=finish_reason, seed=generation.seed)
        return JSONResponse(
            body,
            media_type=f"application/json; type={MEDIA_TYPES[image_format]}",
            headers={"x-request-id": request_id},
        )
    data = b"" if missing else render_image(*render_arguments)
    headers = {
        "finish-reason": finish_reason,
        "seed": str(generation.seed),
        "x-request-id": request_id,
    }
    return Response(data, media_type=MEDIA_TYPES[image_format], headers=headers)


def _error_name(status: int) -> str:
    """Return the documented error name, or the snake_case HTTP reason phrase."""
    if status in _ERROR_NAMES:
        return _ERROR_NAMES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "internal_error" if status >= 500 else "bad_request"
