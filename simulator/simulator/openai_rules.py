"""Validation of OpenAI `POST /v1/images/generations` bodies, per model.

The rules follow the `CreateImageRequest` schema of the official OpenAPI
description (openai/openai-openapi, commit f85dbe2). The `unknown_parameter` and
`invalid_size` errors copy responses observed from the real service. The other
errors use the codes that the OpenAI API returns for the same kind of error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DALL_E_2 = "dall-e-2"
DALL_E_3 = "dall-e-3"
DEFAULT_GPT_IMAGE_MODEL = "gpt-image-1"
GPT_IMAGE_MODELS = frozenset(
    {
        "gpt-image-1",
        "gpt-image-1-mini",
        "gpt-image-1.5",
        "gpt-image-2",
        "gpt-image-2-2026-04-21",
        "chatgpt-image-latest",
    }
)
FREE_SIZE_MODELS = frozenset({"gpt-image-2", "gpt-image-2-2026-04-21"})
IMAGE_MODELS = (DALL_E_2, DALL_E_3, *sorted(GPT_IMAGE_MODELS))

MAX_PROMPT_CHARS = {DALL_E_2: 1000, DALL_E_3: 4000}
GPT_MAX_PROMPT_CHARS = 32000
MAX_N = 10

SIZES = {
    DALL_E_2: ("256x256", "512x512", "1024x1024"),
    DALL_E_3: ("1024x1024", "1792x1024", "1024x1792"),
}
GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
# gpt-image-2 also accepts WIDTHxHEIGHT with both sides divisible by 16, an aspect
# ratio between 1:3 and 3:1, a long side of at most 3840 and at most 3840x2160
# pixels in total.
FREE_SIZE_STEP = 16
FREE_SIZE_MAX_EDGE = 3840
FREE_SIZE_MAX_PIXELS = 3840 * 2160
AUTO_SIZE = (1024, 1024)

QUALITIES = {
    DALL_E_2: ("standard", "auto"),
    DALL_E_3: ("standard", "hd", "auto"),
}
GPT_QUALITIES = ("low", "medium", "high", "auto")
RESPONSE_FORMATS = ("url", "b64_json")
STYLES = ("vivid", "natural")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
BACKGROUNDS = ("transparent", "opaque", "auto")
MODERATIONS = ("low", "auto")
MAX_PARTIAL_IMAGES = 3

# Parameters that only the GPT image models accept. Using one without `model`
# selects a GPT image model instead of the default dall-e-2.
GPT_ONLY_PARAMETERS = (
    "output_format",
    "output_compression",
    "background",
    "moderation",
    "stream",
    "partial_images",
)
KNOWN_PARAMETERS = frozenset(
    {"prompt", "model", "n", "quality", "response_format", "size", "style", "user"}
    | set(GPT_ONLY_PARAMETERS)
)


class OpenAIError(Exception):
    """An error that the OpenAI API returns as `{"error": {...}}`."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.param = param
        self.code = code


@dataclass(frozen=True)
class GenerationRequest:
    """A validated generation request with every default filled in."""

    model: str
    prompt: str
    n: int
    width: int
    height: int
    quality: str
    response_format: str  # "b64_json" for the GPT image models
    style: str | None
    output_format: str
    output_compression: int
    background: str
    stream: bool
    partial_images: int

    @property
    def is_gpt_image(self) -> bool:
        return self.model in GPT_IMAGE_MODELS


def validate_generation(payload: Any) -> GenerationRequest:
    """Check a generations body against the per-model rules.

    Raises OpenAIError with the status, type, param and code that the API uses.
    """
    if not isinstance(payload, dict):
        raise OpenAIError(
            "Invalid type for request body: expected an object.",
            code="invalid_type",
        )
    _reject_unknown_parameters(payload)
    prompt = _require_string(payload, "prompt")
    model = _select_model(payload)
    gpt_image = model in GPT_IMAGE_MODELS
    _check_prompt_length(prompt, model)
    n = _check_n(payload, model)
    _reject_parameters_of_other_models(payload, model)
    width, height = _check_size(payload, model)
    quality = _check_enum(payload, "quality", _qualities(model), default="auto")
    if gpt_image:
        return _gpt_image_request(payload, model, prompt, n, width, height, quality)
    response_format = _check_enum(
        payload, "response_format", RESPONSE_FORMATS, default="url"
    )
    style = None
    if model == DALL_E_3:
        style = _check_enum(payload, "style", STYLES, default="vivid")
    _check_optional_string(payload, "user")
    return GenerationRequest(
        model=model,
        prompt=prompt,
        n=n,
        width=width,
        height=height,
        quality=quality,
        response_format=response_format,
        style=style,
        output_format="png",
        output_compression=100,
        background="opaque",
        stream=False,
        partial_images=0,
    )


def _gpt_image_request(
    payload: dict[str, Any],
    model: str,
    prompt: str,
    n: int,
    width: int,
    height: int,
    quality: str,
) -> GenerationRequest:
    output_format = _check_enum(payload, "output_format", OUTPUT_FORMATS, default="png")
    compression = _check_integer(payload, "output_compression", 0, 100, default=100)
    background = _check_enum(payload, "background", BACKGROUNDS, default="auto")
    if background == "transparent" and output_format == "jpeg":
        raise OpenAIError(
            "Transparent background requires output_format 'png' or 'webp'.",
            param="background",
            code="invalid_value",
        )
    _check_enum(payload, "moderation", MODERATIONS, default="auto")
    stream = _check_boolean(payload, "stream")
    partial_images = _check_integer(
        payload, "partial_images", 0, MAX_PARTIAL_IMAGES, default=0
    )
    _check_optional_string(payload, "user")
    return GenerationRequest(
        model=model,
        prompt=prompt,
        n=n,
        width=width,
        height=height,
        quality=quality,
        response_format="b64_json",
        style=None,
        output_format=output_format,
        output_compression=compression,
        background="transparent" if background == "transparent" else "opaque",
        stream=stream,
        partial_images=partial_images,
    )


def _reject_unknown_parameters(payload: dict[str, Any]) -> None:
    for name in payload:
        if name not in KNOWN_PARAMETERS:
            raise _unknown_parameter(name)


def _unknown_parameter(name: str) -> OpenAIError:
    return OpenAIError(
        f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
    )


def _select_model(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    if model is None:
        uses_gpt_parameter = any(
            payload.get(name) is not None for name in GPT_ONLY_PARAMETERS
        )
        return DEFAULT_GPT_IMAGE_MODEL if uses_gpt_parameter else DALL_E_2
    if not isinstance(model, str):
        raise _invalid_type("model", "a string", model)
    if model not in IMAGE_MODELS:
        raise OpenAIError(
            f"The model '{model}' does not exist or you do not have access to it.",
            status=404,
            param="model",
            code="model_not_found",
        )
    return model


def _check_prompt_length(prompt: str, model: str) -> None:
    if not prompt:
        raise OpenAIError(
            "Invalid 'prompt': empty string. Expected a string with minimum length "
            "1, but got an empty string instead.",
            param="prompt",
            code="empty_string",
        )
    limit = MAX_PROMPT_CHARS.get(model, GPT_MAX_PROMPT_CHARS)
    if len(prompt) > limit:
        raise OpenAIError(
            f"Invalid 'prompt': string too long. Expected a string with maximum "
            f"length {limit}, but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )


def _check_n(payload: dict[str, Any], model: str) -> int:
    n = _check_integer(payload, "n", 1, MAX_N, default=1)
    if model == DALL_E_3 and n != 1:
        # NOTE: the real status and message for dall-e-3 with n > 1 are not
        # confirmed. A 400 invalid_value is the closest documented pattern.
        raise OpenAIError(
            "Invalid 'n': dall-e-3 supports only n=1.", param="n", code="invalid_value"
        )
    return n


def _reject_parameters_of_other_models(payload: dict[str, Any], model: str) -> None:
    # Only the response_format case is confirmed from real responses. The same
    # error is used for the other parameters that the model does not accept.
    names: list[str] = []
    if model in GPT_IMAGE_MODELS:
        names = ["response_format", "style"]
    else:
        names = list(GPT_ONLY_PARAMETERS)
        if model != DALL_E_3:
            names.append("style")
    for name in names:
        if payload.get(name) is not None:
            raise _unknown_parameter(name)


def _check_size(payload: dict[str, Any], model: str) -> tuple[int, int]:
    size = payload.get("size")
    if size is None:
        size = "auto" if model in GPT_IMAGE_MODELS else "1024x1024"
    if not isinstance(size, str):
        raise _invalid_type("size", "a string", size)
    allowed = SIZES.get(model, GPT_SIZES)
    if size in allowed:
        return AUTO_SIZE if size == "auto" else _parse_size(size)
    if model in FREE_SIZE_MODELS:
        free_size = _parse_free_size(size)
        if free_size is not None:
            return free_size
    raise OpenAIError("The size is not supported by this model.", code="invalid_size")


def _parse_size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def _parse_free_size(size: str) -> tuple[int, int] | None:
    width_text, separator, height_text = size.partition("x")
    if not (separator and width_text.isdigit() and height_text.isdigit()):
        return None
    width, height = int(width_text), int(height_text)
    if width == 0 or height == 0:
        return None
    if width % FREE_SIZE_STEP or height % FREE_SIZE_STEP:
        return None
    if max(width, height) > 3 * min(width, height):
        return None
    if max(width, height) > FREE_SIZE_MAX_EDGE or width * height > FREE_SIZE_MAX_PIXELS:
        return None
    return width, height


def _qualities(model: str) -> tuple[str, ...]:
    return QUALITIES.get(model, GPT_QUALITIES)


def _require_string(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None:
        raise OpenAIError(
            f"Missing required parameter: '{name}'.",
            param=name,
            code="missing_required_parameter",
        )
    if not isinstance(value, str):
        raise _invalid_type(name, "a string", value)
    return value


def _check_optional_string(payload: dict[str, Any], name: str) -> None:
    value = payload.get(name)
    if value is not None and not isinstance(value, str):
        raise _invalid_type(name, "a string", value)


def _check_enum(
    payload: dict[str, Any], name: str, allowed: tuple[str, ...], *, default: str
) -> str:
    value = payload.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _invalid_type(name, "a string", value)
    if value not in allowed:
        listed = ", ".join(f"'{item}'" for item in allowed)
        raise OpenAIError(
            f"Invalid value: '{value}'. Supported values are: {listed}.",
            param=name,
            code="invalid_value",
        )
    return value


def _check_integer(
    payload: dict[str, Any], name: str, minimum: int, maximum: int, *, default: int
) -> int:
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(name, "an integer", value)
    if value < minimum:
        raise OpenAIError(
            f"Invalid '{name}': integer below minimum value. Expected a value >= "
            f"{minimum}, but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if value > maximum:
        raise OpenAIError(
            f"Invalid '{name}': integer above maximum value. Expected a value <= "
            f"{maximum}, but got {value} instead.",
            param=name,
            code="integer_above_max_value",
        )
    return value


def _check_boolean(payload: dict[str, Any], name: str) -> bool:
    value = payload.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid_type(name, "a boolean", value)
    return value


def _invalid_type(name: str, expected: str, value: Any) -> OpenAIError:
    return OpenAIError(
        f"Invalid type for '{name}': expected {expected}, but got "
        f"{_json_type_name(value)} instead.",
        param=name,
        code="invalid_type",
    )


def _json_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"
