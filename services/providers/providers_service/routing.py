"""Which providers may serve a request, and in which order to try them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from providers_service.models import Provider

ROUTING_STRATEGIES = ("priority", "latency", "cost", "round_robin")


@dataclass(frozen=True, slots=True)
class Selection:
    candidates: list[Provider]
    available_sizes: list[str]
    # Providers that could serve the request but are not active.
    unavailable_count: int


def serves(provider: Provider, *, size: str, model: str, name: str) -> bool:
    """Tell whether a provider is able to serve the request at all."""
    if name and provider.name != name:
        return False
    if size not in provider.supported_sizes:
        return False
    # A provider that lists no models accepts whatever model is asked for.
    return not model or not provider.models or model in provider.models


def select(
    providers: Sequence[Provider], *, size: str, model: str, name: str
) -> Selection:
    capable = [p for p in providers if serves(p, size=size, model=model, name=name)]
    active = [p for p in capable if p.status == "active"]
    ordered = sorted(active, key=lambda p: (p.priority, -p.weight, p.name))
    sizes = sorted(
        {size for p in providers for size in p.supported_sizes}, key=_size_key
    )
    return Selection(
        candidates=ordered,
        available_sizes=sizes,
        unavailable_count=len(capable) - len(active),
    )


def _size_key(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)
