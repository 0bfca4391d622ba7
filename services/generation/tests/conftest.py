"""Helpers for the adapter tests: provider targets on the test stack's simulator
and a way to call an adapter directly, outside the running service."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from generation_service.adapters.base import (
    ProviderAdapter,
    ProviderCall,
    ProviderResult,
    ProviderTarget,
)
from generation_service.runtime import create_provider_client
from generation_service.storage import fetch_provider_image
from router_common.url_guard import Allowlist
from stack import Stack

MAX_IMAGE_BYTES = 25 * 1024 * 1024


@dataclass
class AdapterRun:
    """What one direct adapter call produced, besides its result."""

    progress: list[int] = field(default_factory=list)
    fetched_urls: list[str] = field(default_factory=list)


@pytest.fixture
def sim_target(stack: Stack) -> Callable[..., ProviderTarget]:
    """Build a provider target on the simulator, with faults set by options."""

    def build(
        provider_type: str,
        *options: str,
        tag: str,
        api_key: str = "sk-test",
        timeout_ms: int = 10_000,
        max_images: int = 10,
        models: tuple[str, ...] = (),
    ) -> ProviderTarget:
        api = "/v1" if provider_type.startswith("openai") else ""
        prefix = ",".join([f"tag={tag}", *options])
        return ProviderTarget(
            id=str(uuid.uuid4()),
            name=f"direct-{tag}",
            type=provider_type,
            base_url=f"{stack.simulator_url}/s/{prefix}{api}",
            api_key=api_key,
            cost_per_image=Decimal("0.01"),
            max_images_per_request=max_images,
            timeout_ms=timeout_ms,
            models=models,
        )

    return build


@pytest.fixture
def call_adapter(stack: Stack) -> Callable[..., tuple[ProviderResult, AdapterRun]]:
    """Call an adapter once with the service's own HTTP client, as the runner does.

    Images at URLs go through the router's URL guard, with the simulator's
    address allow-listed as the test stack allows it.
    """
    allowlist = Allowlist.parse(httpx.URL(stack.simulator_url).netloc.decode())

    def call(
        adapter: ProviderAdapter,
        target: ProviderTarget,
        request: ProviderCall,
        *,
        run: AdapterRun | None = None,
    ) -> tuple[ProviderResult, AdapterRun]:
        run = run or AdapterRun()
        timeout = target.timeout_ms / 1000

        async def main() -> ProviderResult:
            async with create_provider_client() as client:

                async def fetch_image(url: str) -> bytes:
                    run.fetched_urls.append(url)
                    return await fetch_provider_image(
                        client,
                        url,
                        allowlist=allowlist,
                        max_bytes=MAX_IMAGE_BYTES,
                        timeout=timeout,
                    )

                async def on_progress(percent: int) -> None:
                    run.progress.append(percent)

                return await adapter.generate(
                    client,
                    target,
                    request,
                    timeout,
                    fetch_image=fetch_image,
                    on_progress=on_progress,
                )

        return asyncio.run(main()), run

    return call


@pytest.fixture
def sim_requests(stack: Stack) -> Callable[[str], list[dict[str, Any]]]:
    """Return the requests the simulator recorded under a tag, oldest first."""

    def read(tag: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{stack.simulator_url}/__sim/calls", params={"tag": tag})
        assert response.status_code == 200, response.text
        return response.json()["requests"]

    return read
