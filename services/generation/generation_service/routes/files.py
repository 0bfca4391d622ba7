"""`GET /api/v1/images/files/{name}`: stored images, streamed from the store.

With IMAGE_STORAGE=s3 nginx proxies this path here. With local storage nginx
serves the directory itself, so the route is only reached directly. Like
nginx, it needs no credentials: the random name is the capability.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from generation_service.storage import (
    CACHE_CONTROL,
    FILES_PATH,
    ImageStore,
    is_valid_file_name,
)
from router_common.errors import NotFoundError

router = APIRouter(tags=["images"])


@router.get(FILES_PATH + "{file_name}", response_class=StreamingResponse)
async def get_image_file(file_name: str, request: Request) -> StreamingResponse:
    """Stream one stored image with its content type and a year-long cache."""
    # The fixed pattern admits no path separators or dots beyond the
    # extension, so a name can never leave the store's directory or prefix.
    if not is_valid_file_name(file_name):
        raise NotFoundError("No stored image has this name")
    store: ImageStore = request.app.state.store
    try:
        image = await store.stream(file_name)
    except FileNotFoundError:
        raise NotFoundError("No stored image has this name") from None
    return StreamingResponse(
        image.chunks,
        media_type=image.content_type,
        headers={
            "Content-Length": str(image.byte_size),
            "Cache-Control": CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
        },
    )
