"""Provider adapters: translate requests, responses and stream events without doing I/O."""

from __future__ import annotations

from ..core.config import ProviderSettings
from .anthropic import AnthropicAdapter
from .base import Adapter
from .google import GoogleAdapter
from .openai import OpenAIAdapter


def adapter_for(provider: ProviderSettings) -> Adapter:
    """The adapter that speaks this provider's wire format (`kind`)."""
    if provider.kind == "anthropic":
        return AnthropicAdapter(provider.name)
    if provider.kind == "google":
        return GoogleAdapter(provider.name)
    return OpenAIAdapter(provider.name)
