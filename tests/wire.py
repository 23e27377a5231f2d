"""What the client receives: translator output rendered by the OpenAI wire renderer."""

from __future__ import annotations

from typing import Any

from proxy.http.openai_wire import render_event
from proxy.services import Chunks


def wire(chunks: list[dict[str, Any]]) -> list[bytes]:
    """Each chunk as the SSE event it is sent as."""
    return [render_event(Chunks([chunk])) for chunk in chunks]
