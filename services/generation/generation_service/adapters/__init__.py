"""Provider adapters, one module per wire format, looked up by provider type.

Adding a provider type is one adapter module and one entry in `_ADAPTERS`.
"""

from generation_service.adapters.base import ProviderAdapter, ProviderTarget
from generation_service.adapters.midjourney import MidjourneyAdapter
from generation_service.adapters.openai import OpenAIAdapter
from generation_service.adapters.openai_models import check_model_rules
from generation_service.adapters.stability import StabilityAdapter

__all__ = ["adapter_for", "check_model_rules", "max_images_per_call"]

_ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAIAdapter(model_rules=True),
    "openai_compatible": OpenAIAdapter(model_rules=False),
    "stability": StabilityAdapter(),
    "midjourney": MidjourneyAdapter(),
}


def adapter_for(provider_type: str) -> ProviderAdapter | None:
    return _ADAPTERS.get(provider_type)


def max_images_per_call(target: ProviderTarget, model: str | None) -> int:
    """Return how many images one call to `target` may request.

    This is the provider's `maxImagesPerRequest`, lowered to what the adapter
    or the model makes per call (dall-e-3 and Stability: 1, Midjourney: 4).
    """
    adapter = adapter_for(target.type)
    if adapter is None:
        return target.max_images_per_request
    return max(1, adapter.max_images_per_call(target, model))
