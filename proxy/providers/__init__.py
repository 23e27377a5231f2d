"""Provider adapters: translate requests, responses and stream events without doing I/O."""

from __future__ import annotations

from ..core.config import ProviderSettings
from .anthropic import AnthropicAdapter
from .base import Adapter
from .embeddings import EmbeddingAdapter, MistralEmbeddings, OpenAIEmbeddings
from .google import GoogleAdapter
from .google_embeddings import GoogleEmbeddings
from .openai import OpenAIAdapter


def adapter_for(provider: ProviderSettings) -> Adapter:
    """The adapter that speaks this provider's wire format (`kind`)."""
    if provider.kind == "anthropic":
        return AnthropicAdapter(provider.name)
    if provider.kind == "google":
        return GoogleAdapter(provider.name)
    return OpenAIAdapter(provider.name)


def embedding_adapter_for(provider: ProviderSettings) -> EmbeddingAdapter | None:
    """The adapter for this provider's embeddings endpoint; None: it has none (Anthropic)."""
    if provider.kind == "anthropic":
        return None
    if provider.kind == "google":
        return GoogleEmbeddings(provider.name)
    if provider.kind == "mistral":
        return MistralEmbeddings(provider.name)
    return OpenAIEmbeddings(provider.name)
