"""What a chat body can be billed for as input, bounded without a tokenizer or with one.

Every text an upstream can bill (messages, tool and function definitions, response
format schemas, predictions) is in the body, and a byte-level BPE token covers at
least one byte, so the size of the body bounds them. Media are billed otherwise: an
image by its pixels (an allowance each, however many bytes it has), inline audio and
files by their content (bounded by their size), and media an upstream fetches by URL
(video, audio, documents) by a length nothing here can see: only the model's context
window bounds those, which `budget.plan` applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

# Held per image: the largest images cost about this on the dearest tokenizers known
# (OpenAI's patch-based models bill up to 1,536 patches times 2.46).
IMAGE_TOKENS = 4_000
UNBOUNDED = 10**12  # tokens: what only a model's window bounds
TOKENS_PER_MESSAGE = 3  # the chat format's overhead per message, and per reply
TOKENS_PER_REPLY = 3
IMAGE_TYPES = ("image_url", "input_image")
IMAGE_EXTENSIONS = {"png", "jpg", "jpeg", "gif", "webp", "heic", "heif", "bmp", "tif", "tiff"}


@dataclass(frozen=True, slots=True)
class PromptShape:
    text: bytes  # the body as JSON, inline media taken out: every text it can be billed for
    media_bytes: int  # inline audio and files
    images: int
    unbounded: bool  # media by URL whose length nothing here bounds
    messages: int

    def ceiling(self, text_tokens: int | None = None) -> int:
        """Prompt tokens at most: the text's bytes, or its `text_tokens` when counted."""
        if self.unbounded:
            return UNBOUNDED
        text = len(self.text) if text_tokens is None else text_tokens
        overhead = self.messages * TOKENS_PER_MESSAGE + TOKENS_PER_REPLY
        return text + self.media_bytes + self.images * IMAGE_TOKENS + overhead


def shape(body: dict[str, Any]) -> PromptShape:
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    if not any(_has_parts(m) for m in messages):  # text only: the common case
        return PromptShape(orjson.dumps(body), 0, 0, False, len(messages))
    media, images, unbounded = 0, 0, False
    stripped = []
    for message in messages:
        if not _has_parts(message):
            stripped.append(message)
            continue
        parts = []
        for part in message["content"]:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in IMAGE_TYPES:
                images += 1
                unbounded = unbounded or _fetched_media(_image_url(part))
                parts.append({"type": kind})
            elif kind == "input_audio" and isinstance(audio := part.get("input_audio"), dict):
                media += len(str(audio.get("data", "")))
                parts.append({"type": kind})
            elif kind == "file" and isinstance(file := part.get("file"), dict):
                data = str(file.get("file_data", ""))
                media += len(data)
                unbounded = unbounded or _fetched_media(data)
                parts.append({"type": kind, "filename": file.get("filename")})
            else:
                parts.append(part)
        stripped.append({**message, "content": parts})
    text = orjson.dumps({**body, "messages": stripped})
    return PromptShape(text, media, images, unbounded, len(messages))


def prediction_size(body: dict[str, Any]) -> int:
    """A bound on the tokens of a predicted output (billed as output when rejected)."""
    prediction = body.get("prediction")
    return len(orjson.dumps(prediction)) if prediction else 0


def _has_parts(message: Any) -> bool:
    return isinstance(message, dict) and isinstance(message.get("content"), list)


def _image_url(part: dict[str, Any]) -> str:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    return url if isinstance(url, str) else ""


def _fetched_media(url: str) -> bool:
    """A URL an upstream fetches that may not be an image (a video, a recording, a PDF)."""
    if not url or url.startswith("data:"):
        return False
    path = urlsplit(url).path
    extension = path.rpartition(".")[2].lower() if "." in path.rpartition("/")[2] else ""
    return extension != "" and extension not in IMAGE_EXTENSIONS
