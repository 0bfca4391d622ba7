"""Provider selection: filtering by capability and availability, then ordering.

Strategies:
- `priority`: lowest `priority` first. Providers of equal priority are shuffled
  with probabilities proportional to their `weight`, so a provider of weight 3
  comes first three times as often as one of weight 1.
- `latency`: lowest median latency of recent successful attempts first.
  Providers without a recent success come after the measured ones.
- `cost`: lowest `costPerImage` first.
- `round_robin`: the eligible providers in a fixed order (priority, then name),
  rotated by one position at every selection, counted in Redis so that every
  replica shares the rotation.
Ties of `latency` and `cost` are broken by priority, then by name.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from providers_service.health import ProviderState
from providers_service.models import Provider

ROUTING_STRATEGIES = ("priority", "latency", "cost", "round_robin")


@dataclass(frozen=True, slots=True)
class Selection:
    candidates: list[Provider]
    available_sizes: list[str]
    # Providers that could serve the request but are inactive, paused, at
    # their rate limit or behind an open circuit.
    unavailable_count: int


def serves(provider: Provider, *, size: str, model: str, name: str) -> bool:
    """Tell whether a provider is able to serve the request at all."""
    if name and provider.name != name:
        return False
    if size not in provider.supported_sizes:
        return False
    # A provider that lists no models accepts whatever model is asked for.
    return not model or not provider.models or model in provider.models


def is_available(provider: Provider, state: ProviderState) -> bool:
    """Tell whether a provider may be called now."""
    if provider.status != "active":
        return False
    if not state.accepting_calls or state.paused_until_ms is not None:
        return False
    return provider.rate_limit == 0 or state.calls_last_minute < provider.rate_limit


def select(
    providers: Sequence[Provider],
    states: dict[str, ProviderState],
    *,
    size: str,
    model: str,
    name: str,
    strategy: str,
    rotation: int = 0,
    rng: random.Random | None = None,
) -> Selection:
    capable = [p for p in providers if serves(p, size=size, model=model, name=name)]
    available = [p for p in capable if is_available(p, states[str(p.id)])]
    ordered = order(available, states, strategy, rotation=rotation, rng=rng)
    return Selection(
        candidates=ordered,
        available_sizes=sorted_sizes(p.supported_sizes for p in providers),
        unavailable_count=len(capable) - len(available),
    )


def order(
    providers: list[Provider],
    states: dict[str, ProviderState],
    strategy: str,
    *,
    rotation: int = 0,
    rng: random.Random | None = None,
) -> list[Provider]:
    if strategy == "priority":
        return _by_priority_and_weight(providers, rng or random.Random())
    if strategy == "latency":
        return sorted(providers, key=lambda p: _latency_key(p, states[str(p.id)]))
    if strategy == "cost":
        return sorted(providers, key=lambda p: (p.cost_per_image, p.priority, p.name))
    if strategy == "round_robin":
        fixed = sorted(providers, key=lambda p: (p.priority, p.name))
        if not fixed:
            return fixed
        start = rotation % len(fixed)
        return fixed[start:] + fixed[:start]
    raise ValueError(f"unknown routing strategy {strategy!r}")


def _by_priority_and_weight(
    providers: list[Provider], rng: random.Random
) -> list[Provider]:
    # Weighted shuffle (Efraimidis and Spirakis, 2006): sorting by
    # random() ** (1 / weight), largest first, puts each provider first with a
    # probability proportional to its weight.
    keyed = [(p.priority, -(rng.random() ** (1 / p.weight)), p) for p in providers]
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [provider for _, _, provider in keyed]


def _latency_key(
    provider: Provider, state: ProviderState
) -> tuple[int, float, int, str]:
    median = state.median_latency_ms
    if median is None:
        return (1, 0.0, provider.priority, provider.name)
    return (0, median, provider.priority, provider.name)


def sorted_sizes(size_lists: Iterable[Iterable[str]]) -> list[str]:
    """Merge size lists into one, smallest first."""
    sizes = {size for sizes in size_lists for size in sizes}
    return sorted(sizes, key=_size_key)


def _size_key(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)
