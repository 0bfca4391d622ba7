"""Per-model request rules of OpenAI's image models, checked before any call.

The rules follow the field descriptions of `CreateImageRequest` in OpenAI's
OpenAPI document: sizes, `quality` and `style` values and prompt lengths per
model. `n` is not checked here: a request for more images
than a model makes per call is split into several calls instead (see
`max_images`).
"""

from __future__ import annotations

from dataclasses import dataclass

from router_common.errors import ValidationError

# The model OpenAI uses when a generation request names none.
DEFAULT_MODEL = "dall-e-2"
GPT_IMAGE_PREFIXES = ("gpt-image", "chatgpt-image")
# `quality: auto` is the API's default, so every model accepts it.
AUTO_QUALITY = "auto"

# gpt-image-2 also accepts free sizes within these bounds.
FREE_SIZE_STEP = 16
FREE_SIZE_MAX_LONG_SIDE = 3840
FREE_SIZE_MAX_PIXELS = 3840 * 2160
FREE_SIZE_MAX_ASPECT = 3


@dataclass(frozen=True, slots=True)
class ModelRules:
    max_prompt_length: int
    max_images: int
    sizes: frozenset[str]
    qualities: frozenset[str]
    styles: frozenset[str] = frozenset()
    free_sizes: bool = False


DALL_E_2 = ModelRules(
    max_prompt_length=1000,
    max_images=10,
    sizes=frozenset({"256x256", "512x512", "1024x1024"}),
    qualities=frozenset({"standard"}),
)
DALL_E_3 = ModelRules(
    max_prompt_length=4000,
    max_images=1,
    sizes=frozenset({"1024x1024", "1792x1024", "1024x1792"}),
    qualities=frozenset({"standard", "hd"}),
    styles=frozenset({"vivid", "natural"}),
)
GPT_IMAGE = ModelRules(
    max_prompt_length=32000,
    max_images=10,
    sizes=frozenset({"1024x1024", "1536x1024", "1024x1536"}),
    qualities=frozenset({"low", "medium", "high"}),
)
GPT_IMAGE_2 = ModelRules(
    max_prompt_length=GPT_IMAGE.max_prompt_length,
    max_images=GPT_IMAGE.max_images,
    sizes=GPT_IMAGE.sizes,
    qualities=GPT_IMAGE.qualities,
    free_sizes=True,
)


def is_gpt_image_model(model: str | None) -> bool:
    return model is not None and model.startswith(GPT_IMAGE_PREFIXES)


def rules_for(model: str | None) -> ModelRules | None:
    """Return the rules of one of OpenAI's models, or None for any other name.

    A missing model means OpenAI's default, dall-e-2.
    """
    name = model or DEFAULT_MODEL
    if name == "dall-e-2":
        return DALL_E_2
    if name == "dall-e-3":
        return DALL_E_3
    if name.startswith("gpt-image-2"):
        return GPT_IMAGE_2
    if is_gpt_image_model(name):
        return GPT_IMAGE
    return None


def max_images(model: str | None) -> int | None:
    """Return how many images one call to an OpenAI model may ask for, if known."""
    rules = rules_for(model)
    return rules.max_images if rules else None


def check_model_rules(
    *,
    prompt: str,
    size: str,
    model: str | None,
    quality: str | None = None,
    style: str | None = None,
) -> None:
    """Raise `ValidationError` naming the field when a request breaks the rules
    of the OpenAI model it names.

    Requests that name no model, or a model that is not OpenAI's, pass: the
    provider that serves them decides. Call this before selecting providers.
    """
    if model is None:
        return
    rules = rules_for(model)
    if rules is not None:
        _check(rules, model, prompt=prompt, size=size, quality=quality, style=style)


def check_default_model_rules(
    *,
    prompt: str,
    size: str,
    model: str | None,
    quality: str | None = None,
    style: str | None = None,
) -> None:
    """Like `check_model_rules`, but a missing model means OpenAI's default."""
    rules = rules_for(model)
    if rules is not None:
        name = model or DEFAULT_MODEL
        _check(rules, name, prompt=prompt, size=size, quality=quality, style=style)


def _check(
    rules: ModelRules,
    model: str,
    *,
    prompt: str,
    size: str,
    quality: str | None,
    style: str | None,
) -> None:
    if len(prompt) > rules.max_prompt_length:
        raise _invalid(
            "prompt",
            f"Prompt is {len(prompt)} characters long; {model} accepts at most "
            f"{rules.max_prompt_length}",
            code="string_above_max_length",
        )
    if size not in rules.sizes and not (rules.free_sizes and _is_free_size(size)):
        listed = ", ".join(sorted(rules.sizes))
        extra = " or any size within gpt-image-2's bounds" if rules.free_sizes else ""
        raise _invalid(
            "size",
            f"Size {size} is not supported by {model}; use one of {listed}{extra}",
            code="invalid_size",
        )
    if quality is not None and quality != AUTO_QUALITY:
        if quality not in rules.qualities:
            listed = ", ".join(sorted(rules.qualities | {AUTO_QUALITY}))
            raise _invalid(
                "quality",
                f"Quality {quality!r} is not supported by {model}; use one of {listed}",
                code="invalid_value",
            )
    if style is not None and style not in rules.styles:
        if rules.styles:
            reason = f"use one of {', '.join(sorted(rules.styles))}"
        else:
            reason = "omit it"
        raise _invalid(
            "style",
            f"Style {style!r} is not supported by {model}; {reason}",
            code="invalid_value",
        )


def _is_free_size(size: str) -> bool:
    """Check gpt-image-2's free sizes: both sides multiples of 16, an aspect
    ratio within 1:3 to 3:1, and at most 3840 pixels long and 3840x2160 in area."""
    width, _, height = size.partition("x")
    if not (width.isdigit() and height.isdigit()):
        return False
    w, h = int(width), int(height)
    if w == 0 or h == 0 or w % FREE_SIZE_STEP or h % FREE_SIZE_STEP:
        return False
    if max(w, h) > FREE_SIZE_MAX_LONG_SIDE or w * h > FREE_SIZE_MAX_PIXELS:
        return False
    return max(w, h) <= FREE_SIZE_MAX_ASPECT * min(w, h)


def _invalid(field: str, message: str, *, code: str) -> ValidationError:
    return ValidationError(
        message,
        details={"fields": [{"field": field, "message": message}]},
        param=field,
        code=code,
    )
