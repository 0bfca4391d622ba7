"""OpenAI's images API (`POST {base}/images/generations`), also spoken by
`openai_compatible` providers.

DALL·E models are asked for `b64_json`, so the router stores the bytes without a
second fetch. GPT image models always return base64 and reject
`response_format`, so it is never sent to them. Fields of a response that the
router does not read are ignored.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import httpx

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
from generation_service.adapters.openai_models import (
    check_default_model_rules,
    is_gpt_image_model,
    max_images,
)

# Error codes with which OpenAI refuses a prompt under its content policy.
CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "moderation_blocked"})
CONTENT_POLICY_TYPES = frozenset({"image_generation_user_error"})


def request_body(call: ProviderCall) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": call.prompt, "n": call.n, "size": call.size}
    for name in ("model", "quality", "style", "user"):
        value = getattr(call, name)
        if value is not None:
            body[name] = value
    if not is_gpt_image_model(call.model):
        body["response_format"] = "b64_json"
    return body


class OpenAIAdapter:
    """Calls an OpenAI images endpoint.

    With `model_rules` (the `openai` type), OpenAI's per-model rules apply: a
    request that breaks them raises `ValidationError` before any call, and a
    call requests no more images than the model makes at once (dall-e-3: 1).
    Without them (`openai_compatible`), the provider's own limits decide.
    """

    def __init__(self, *, model_rules: bool) -> None:
        self.model_rules = model_rules

    def max_images_per_call(self, target: ProviderTarget, model: str | None) -> int:
        limit = max_images(model) if self.model_rules else None
        if limit is None:
            return target.max_images_per_request
        return min(target.max_images_per_request, limit)

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
        if self.model_rules:
            check_default_model_rules(
                prompt=call.prompt,
                size=call.size,
                model=call.model,
                quality=call.quality,
                style=call.style,
            )
        url = f"{target.base_url}/images/generations"
        headers = {"Authorization": f"Bearer {target.api_key}"}
        try:
            response = await client.post(
                url, json=request_body(call), headers=headers, timeout=timeout
            )
        except TRANSPORT_ERRORS as error:
            raise call_failure(error, timeout) from error

        if response.status_code != 200:
            raise failure_from_response(response)
        return ProviderResult(images=parse_images(response, call.n))


def failure_from_response(response: httpx.Response) -> ProviderFailure:
    status = response.status_code
    error = _error_object(response)
    message = str(error.get("message") or f"HTTP {status}")[:300]
    code = error.get("code")
    if status == 429:
        return ProviderFailure(
            "rate_limited",
            message,
            status_code=status,
            retry_after_seconds=retry_after_seconds(response),
        )
    if status < 400 or status >= 500 or status in (401, 403, 404, 408):
        # The provider is down or misconfigured, or responded with a redirect,
        # which is never followed: another provider may serve it.
        return ProviderFailure("error", message, status_code=status)
    if code in CONTENT_POLICY_CODES or error.get("type") in CONTENT_POLICY_TYPES:
        return ProviderFailure("content_policy", message, status_code=status, code=code)
    return ProviderFailure(
        "invalid_request", message, status_code=status, code=str(code) if code else None
    )


def _error_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def parse_images(response: httpx.Response, expected: int) -> list[ProviderImage]:
    """Read `data[]` of a 200 response; any count but `expected` is a failure."""
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
    items = body.get("data") if isinstance(body, dict) else None
    if not isinstance(items, list) or len(items) != expected:
        count = len(items) if isinstance(items, list) else 0
        raise ProviderFailure(
            "error",
            f"response carries {count} images, expected {expected}",
            status_code=200,
        )
    return [_parse_item(item) for item in items]


def _parse_item(item: Any) -> ProviderImage:
    if not isinstance(item, dict):
        raise ProviderFailure("error", "image entry is not an object", status_code=200)
    revised = item.get("revised_prompt")
    revised = revised if isinstance(revised, str) else None
    encoded = item.get("b64_json")
    if isinstance(encoded, str) and encoded:
        try:
            return ProviderImage(
                data=base64.b64decode(encoded, validate=True), revised_prompt=revised
            )
        except (binascii.Error, ValueError) as error:
            raise ProviderFailure(
                "error", "b64_json is not valid base64", status_code=200
            ) from error
    url = item.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return ProviderImage(url=url, revised_prompt=revised)
    raise ProviderFailure(
        "error", "image entry has neither b64_json nor url", status_code=200
    )
