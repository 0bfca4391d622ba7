"""The user-facing catalogue: models and sizes that can be served now.

It names no provider and carries no secret. A provider that lists no models
accepts any model name, so it adds sizes to `sizes` but no model entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from providers_service.models import Provider
from providers_service.routing import sorted_sizes


@dataclass(frozen=True, slots=True)
class CatalogueModel:
    id: str
    sizes: list[str]
    # Unix seconds when the first provider offering the model was added.
    created: int


@dataclass(frozen=True, slots=True)
class Catalogue:
    models: list[CatalogueModel]
    sizes: list[str]


def build(available: Sequence[Provider]) -> Catalogue:
    """Build the catalogue from the providers that may be called now."""
    offering: dict[str, list[Provider]] = {}
    for provider in available:
        for model in provider.models:
            offering.setdefault(model, []).append(provider)
    models = [
        CatalogueModel(
            id=model,
            sizes=sorted_sizes(p.supported_sizes for p in providers),
            created=int(min(p.created_at for p in providers).timestamp()),
        )
        for model, providers in sorted(offering.items())
    ]
    return Catalogue(
        models=models, sizes=sorted_sizes(p.supported_sizes for p in available)
    )
