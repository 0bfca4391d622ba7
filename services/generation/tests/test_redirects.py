"""Provider redirects are never followed: neither a provider call nor an image
download goes where a redirect points, so a provider cannot steer the router to
an internal address."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from generation_service.adapters.base import ProviderCall, ProviderFailure
from generation_service.adapters.openai import OpenAIAdapter
from generation_service.runtime import create_provider_client
from generation_service.storage import fetch_provider_image
from router_common.url_guard import Allowlist
from stack import GENERATION_HTTP


@pytest.fixture
def redirecting_server(stack) -> Iterator[tuple[str, list[str], dict[str, str]]]:
    """A local server that responds to every request with a redirect to a URL that
    the test sets, and records the paths it was asked for."""
    seen: list[str] = []
    target: dict[str, str] = {}

    class Redirect(BaseHTTPRequestHandler):
        def _redirect(self) -> None:
            seen.append(self.path)
            self.send_response(302)
            self.send_header("Location", target["url"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _redirect

        def log_message(self, *args: object) -> None:
            pass

    port = stack.profile.port(GENERATION_HTTP) + 48
    server = ThreadingHTTPServer(("127.0.0.1", port), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port}", seen, target
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_provider_redirect_is_not_followed(
    stack, redirecting_server, sim_target, simulator_calls
):
    address, seen, target = redirecting_server
    tag = f"redirected-{uuid.uuid4().hex[:8]}"
    target["url"] = f"{stack.simulator_url}/s/tag={tag}/v1/images/generations"
    provider = replace(
        sim_target("openai_compatible", tag=tag), base_url=f"http://{address}/v1"
    )

    async def call() -> None:
        async with create_provider_client() as client:
            await OpenAIAdapter(model_rules=False).generate(
                client,
                provider,
                ProviderCall(prompt="a fox", n=1, size="256x256"),
                5.0,
                fetch_image=_never_called,
            )

    with pytest.raises(ProviderFailure) as raised:
        asyncio.run(call())
    assert raised.value.outcome == "error"
    assert raised.value.status_code == 302
    assert seen == ["/v1/images/generations"]
    assert simulator_calls(tag)["count"] == 0


def test_image_download_redirect_is_not_followed(
    stack, redirecting_server, simulator_calls
):
    address, seen, target = redirecting_server
    tag = f"redirected-{uuid.uuid4().hex[:8]}"
    target["url"] = f"{stack.simulator_url}/s/tag={tag}/files/anything.png"

    async def download() -> bytes:
        async with create_provider_client() as client:
            return await fetch_provider_image(
                client,
                f"http://{address}/image.png",
                allowlist=Allowlist.parse(address),
                max_bytes=1024 * 1024,
                timeout=5.0,
            )

    with pytest.raises(ProviderFailure) as raised:
        asyncio.run(download())
    assert raised.value.outcome == "error"
    assert "302" in raised.value.message
    assert seen == ["/image.png"]
    assert simulator_calls(tag)["count"] == 0


async def _never_called(url: str) -> bytes:
    raise AssertionError(f"no image download expected, got {url}")
