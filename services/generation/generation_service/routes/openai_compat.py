"""`/v1/images`: the OpenAI-compatible surface, for the official `openai` SDK.

Same request and generation flow as `/api/v1/images`, returned in OpenAI's
exact response and error shapes.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from generation_service import service
from generation_service.auth import SCOPE_GENERATE, CallerDep
from generation_service.schemas import GenerationRequest
from router_common.errors import RouterError, ValidationError, render_error

router = APIRouter(prefix="/v1/images", tags=["openai"])

# Errors that an SDK retry would only repeat or pay for again.
NO_RETRY_TYPES = frozenset(
    {
        "provider_error",
        "timeout",
        "content_policy_violation",
        "conflict",
        "validation_error",
    }
)


@router.post("/generations")
async def create_image(
    body: GenerationRequest, caller: CallerDep, request: Request
) -> JSONResponse:
    caller.require(SCOPE_GENERATE)
    try:
        if body.run_async:
            raise ValidationError(
                "async is not part of OpenAI's images API; "
                "use /api/v1/images/generations",
                param="async",
                code="unknown_parameter",
            )
        result = await service.generate(request, body, caller, run_async=False)
    except RouterError as error:
        response = render_error(request, error)
        if error.error_type in NO_RETRY_TYPES:
            response.headers["x-should-retry"] = "false"
        return response

    store = request.app.state.store
    data = []
    for image in result.generation.images:
        item: dict[str, str] = {}
        if body.response_format == "b64_json":
            raw = result.inline.get(image.file_name) or await store.read(
                image.file_name
            )
            item["b64_json"] = base64.b64encode(raw).decode()
        else:
            item["url"] = store.url_for(image.file_name)
        if image.revised_prompt:
            item["revised_prompt"] = image.revised_prompt
        data.append(item)
    created = int(result.generation.created_at.timestamp())
    return JSONResponse({"created": created, "data": data}, headers=result.headers)
