"""Provider adapters, one module per wire format, looked up by provider type."""

from generation_service.adapters.base import ProviderAdapter
from generation_service.adapters.openai import OpenAIAdapter

_ADAPTERS: dict[str, ProviderAdapter] = {
    "openai": OpenAIAdapter(),
    "openai_compatible": OpenAIAdapter(),
}


def adapter_for(provider_type: str) -> ProviderAdapter | None:
    return _ADAPTERS.get(provider_type)
