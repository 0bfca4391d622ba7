"""The router's error types and their rendering.

Every service raises `RouterError` subclasses; one set of handlers renders them,
and the framework's own errors, into the envelope
`{"success": false, "error": {"type", "message", "details"}}`. Paths under the
OpenAI-compatible surface (`/v1/`) get OpenAI's shape instead:
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)

OPENAI_SURFACE_PREFIX = "/v1/"


class RouterError(Exception):
    """Base of every error a client may see; carries its HTTP status and type."""

    status_code = 500
    error_type = "internal_error"
    default_message = "Internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        self.headers = headers or {}
        # Specific reason and offending field, used by the OpenAI shape.
        self.code = code
        self.param = param
        super().__init__(self.message)


class ValidationError(RouterError):
    status_code = 400
    error_type = "validation_error"
    default_message = "Invalid request"


class AuthenticationError(RouterError):
    status_code = 401
    error_type = "authentication_error"
    default_message = "Missing or invalid credentials"


class PermissionDeniedError(RouterError):
    status_code = 403
    error_type = "permission_error"
    default_message = "Not allowed"


class NotFoundError(RouterError):
    status_code = 404
    error_type = "not_found"
    default_message = "Not found"


class ConflictError(RouterError):
    status_code = 409
    error_type = "conflict"
    default_message = "Conflict"


class PayloadTooLargeError(RouterError):
    status_code = 413
    error_type = "payload_too_large"
    default_message = "Request body too large"


class RateLimitError(RouterError):
    status_code = 429
    error_type = "rate_limit_exceeded"
    default_message = "Rate limit exceeded"


class ContentPolicyError(RouterError):
    status_code = 400
    error_type = "content_policy_violation"
    default_message = "The provider rejected the prompt under its content policy"


class ProviderError(RouterError):
    status_code = 502
    error_type = "provider_error"
    default_message = "Every eligible provider failed"


class NoProviderAvailableError(RouterError):
    status_code = 503
    error_type = "no_provider_available"
    default_message = "No provider is available to serve this request"


class ServiceUnavailableError(RouterError):
    status_code = 503
    error_type = "service_unavailable"
    default_message = "A required dependency is unavailable; retry shortly"


class RequestTimeoutError(RouterError):
    status_code = 504
    error_type = "timeout"
    default_message = "The request timed out"


class InternalError(RouterError):
    pass


# Statuses the framework raises itself, mapped onto the router's types.
_STATUS_TYPES = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitError,
    503: ServiceUnavailableError,
    504: RequestTimeoutError,
}


def error_body(
    request_path: str,
    error_type: str,
    message: str,
    details: dict[str, Any],
    *,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """Build the error body in the shape the request's surface uses."""
    if request_path.startswith(OPENAI_SURFACE_PREFIX):
        return {
            "error": {
                "message": message,
                "type": error_type,
                "param": param,
                "code": code or error_type,
            }
        }
    return {
        "success": False,
        "error": {"type": error_type, "message": message, "details": details},
    }


def render_error(request: Request, error: RouterError) -> JSONResponse:
    body = error_body(
        request.url.path,
        error.error_type,
        error.message,
        error.details,
        code=error.code,
        param=error.param,
    )
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


def _field_name(location: tuple[Any, ...]) -> str:
    # Drop the "body"/"query" marker so that the name is the one the client sent.
    parts = [str(part) for part in location[1:]] if len(location) > 1 else []
    return ".".join(parts) or str(location[0] if location else "body")


def validation_fields(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Turn pydantic errors into `{field, message}` pairs named as the client sent."""
    fields = []
    for item in errors:
        if item.get("type") == "json_invalid":
            fields.append({"field": "body", "message": "Body is not valid JSON"})
            continue
        message = str(item.get("msg", "Invalid value"))
        if item.get("type") == "extra_forbidden":
            message = "Unknown field"
        fields.append(
            {"field": _field_name(tuple(item.get("loc", ()))), "message": message}
        )
    return fields


async def _handle_router_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RouterError)
    if error.status_code >= 500:
        log.warning(
            "request_failed", error_type=error.error_type, message=error.message
        )
    return render_error(request, error)


async def _handle_validation(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    fields = validation_fields(list(error.errors()))
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in fields[:5])
    first_field = fields[0]["field"] if fields else None
    return render_error(
        request,
        ValidationError(
            f"Invalid request: {summary}",
            details={"fields": fields},
            code="invalid_request",
            param=first_field,
        ),
    )


async def _handle_http(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    error_class = _STATUS_TYPES.get(error.status_code, InternalError)
    message = str(error.detail) if error.detail else error_class.default_message
    if error.status_code == 404:
        message = f"No route matches {request.method} {request.url.path}"
    elif error.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    routed = error_class(message, headers=dict(error.headers or {}))
    routed.status_code = error.status_code
    return render_error(request, routed)


async def _handle_unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled_error", error_class=type(error).__name__)
    return render_error(request, InternalError())


def install_error_handlers(app: FastAPI) -> None:
    """Render every error of `app` in the router's envelope."""
    app.add_exception_handler(RouterError, _handle_router_error)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(Exception, _handle_unexpected)


def _all_error_classes(base: type[RouterError]) -> list[type[RouterError]]:
    found: list[type[RouterError]] = []
    for subclass in base.__subclasses__():
        found.append(subclass)
        found.extend(_all_error_classes(subclass))
    return found


def error_from_record(
    error_type: str, message: str, details: dict[str, Any] | None = None
) -> RouterError:
    """Rebuild an error stored as `{type, message}`, e.g. on a finished job."""
    for error_class in _all_error_classes(RouterError):
        if error_class.error_type == error_type and error_class is not InternalError:
            return error_class(message, details=details)
    return InternalError(message, details=details)
