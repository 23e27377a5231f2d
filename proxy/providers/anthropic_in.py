"""Anthropic Messages requests (`POST /v1/messages`) read as OpenAI chat requests.

The client's Messages body is kept whole for an Anthropic upstream
(`ChatRequest.native`). Its OpenAI translation (`ChatRequest.body`) is what every
other provider's adapter, the hold and tokenroute/auto read, so no provider needs a
second translator. What has no OpenAI counterpart is either dropped from the
translation when it only steers the answer (cache_control, thinking settings, top_k,
metadata, previous thinking blocks: their text still counts in the hold, see
`unsent_text`), or, when it is content or a tool only Anthropic serves (server tools,
documents by URL, server tool results, MCP servers), named in `native_only`, which
keeps the request's route to Anthropic models.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import orjson

from ..core.chat import ChatRequest, parse_chat_request
from ..core.errors import BadRequest

FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
ROUTE_FIELDS = ("models", "route")  # ours, for fallbacks: read here, never sent upstream
NATIVE_FIELDS = ("mcp_servers", "container")  # request fields only Anthropic serves
# Options Anthropic bills at other prices than the catalog's: only their default passes.
UNPRICED = {"speed": "standard", "inference_geo": "global"}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
STOP_REASONS["content_filter"] = "refusal"
STOP_REASONS["function_call"] = "tool_use"


def parse_messages_request(
    body: Any, headers: Iterable[tuple[str, str]], *, count_only: bool = False
) -> ChatRequest:
    """A Messages body as the gateway's chat request; `count_only` for count_tokens,
    which needs no `max_tokens`."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    limit = body.get("max_tokens")
    if not count_only and limit is None:
        raise BadRequest("missing required parameter: 'max_tokens'", param="max_tokens")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise BadRequest("'max_tokens' must be a positive integer", param="max_tokens")
    for name, default in UNPRICED.items():
        if body.get(name) not in (None, default):
            raise BadRequest(
                f"'{name}' {body[name]!r} is not priced by this gateway; leave it out or send "
                f"{default!r}",
                param=name,
            )
    translation = _Translation()
    openai = translation.body(body)
    chat = parse_chat_request(openai)
    native = {k: v for k, v in body.items() if k not in ROUTE_FIELDS}
    return replace(
        chat,
        native=native,
        native_headers=tuple((k, v) for k, v in headers if k in FORWARDED_HEADERS),
        native_only=translation.native_only,
        unsent_text=translation.unsent_text(),
    )


def stop_reason(finish_reason: Any) -> str:
    """Anthropic's stop_reason for an OpenAI finish_reason."""
    known = isinstance(finish_reason, str) and finish_reason in STOP_REASONS
    return STOP_REASONS[finish_reason] if known else "end_turn"


class _Translation:
    """One Messages body's OpenAI translation, and what it could not carry."""

    def __init__(self) -> None:
        self.native_only: str | None = None
        self._unsent: list[str] = []

    def unsent_text(self) -> str:
        return "\n".join(self._unsent)

    def _native(self, what: str, block: Any = None) -> None:
        self.native_only = self.native_only or what
        if block is not None:
            self._unsent.append(orjson.dumps(block).decode())

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if messages is None:
            raise BadRequest("missing required parameter: 'messages'", param="messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array", param="messages")
        out: dict[str, Any] = {"model": body.get("model")}
        system = self._system(body.get("system"))
        out["messages"] = system + [
            m for i, message in enumerate(messages) for m in self._message(message, i)
        ]
        if body.get("max_tokens") is not None:
            out["max_tokens"] = body["max_tokens"]
        tools = self._tools(body.get("tools"))
        if tools:
            out["tools"] = tools
            choice = _tool_choice(body.get("tool_choice"))
            if choice is not None:
                out.update(choice)
        stops = body.get("stop_sequences")
        if stops is not None:
            if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
                raise BadRequest(
                    "'stop_sequences' must be an array of strings", param="stop_sequences"
                )
            if stops:
                out["stop"] = stops
        for name in ("temperature", "top_p"):
            if body.get(name) is not None:
                out[name] = body[name]
        stream = body.get("stream", False)
        if stream is not None and not isinstance(stream, bool):
            raise BadRequest("'stream' must be a boolean", param="stream")
        if stream:
            out["stream"] = True
            out["stream_options"] = {"include_usage": True}
        for name in ROUTE_FIELDS:
            if name in body:
                out[name] = body[name]
        for name in NATIVE_FIELDS:
            if body.get(name):
                self._native(f"'{name}'", body[name])
        return out

    # -- messages ----------------------------------------------------------------------------
    def _system(self, system: Any) -> list[dict[str, Any]]:
        if system is None or system == "":
            return []
        return [{"role": "system", "content": self._text_only(system, "system")}]

    def _text_only(self, content: Any, where: str) -> str:
        if isinstance(content, str):
            return content
        if not isinstance(content, list):
            raise BadRequest(f"'{where}' must be a string or an array of text blocks", param=where)
        texts = []
        for j, block in enumerate(content):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise BadRequest(f"'{where}[{j}]' must be a text block", param=f"{where}[{j}]")
            texts.append(_text(block, f"{where}[{j}]"))
        return "\n\n".join(texts)

    def _message(self, message: Any, i: int) -> list[dict[str, Any]]:
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequest(f"'{where}' must be an object with a 'role'", param=where)
        role, content = message.get("role"), message.get("content")
        if role == "system":  # a system turn inside the conversation
            return [{"role": "system", "content": self._text_only(content, f"{where}.content")}]
        if role not in ("user", "assistant"):
            raise BadRequest(f"'{where}.role' must be 'user' or 'assistant'", param=f"{where}.role")
        if isinstance(content, str):
            return [{"role": role, "content": content}]
        if not isinstance(content, list):
            raise BadRequest(
                f"'{where}.content' must be a string or an array", param=f"{where}.content"
            )
        if role == "assistant":
            return [self._assistant(content, where)]
        return self._user(content, where)

    def _assistant(self, blocks: list[Any], where: str) -> dict[str, Any]:
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for j, block in enumerate(blocks):
            at, kind = f"{where}.content[{j}]", _kind(block, f"{where}.content[{j}]")
            if kind == "text":
                texts.append(_text(block, at))
            elif kind == "tool_use":
                calls.append(_tool_call(block, at))
            elif kind in ("thinking", "redacted_thinking"):
                self._unsent.append(str(block.get("thinking") or block.get("data") or ""))
            else:
                self._native(f"'{at}' of type {kind!r}", block)
        text = "".join(texts)
        content = text if text or not calls else None
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
        return message

    def _user(self, blocks: list[Any], where: str) -> list[dict[str, Any]]:
        """Tool results become tool messages (first, as OpenAI wants them right after the
        calls); the rest, and any images the tools returned, one user message after them."""
        results: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(blocks):
            at, kind = f"{where}.content[{j}]", _kind(block, f"{where}.content[{j}]")
            if kind == "tool_result":
                text, images = self._tool_result(block, at)
                results.append(text)
                parts.extend(images)
            else:
                parts.extend(self._part(block, kind, at))
        return results + ([{"role": "user", "content": parts}] if parts else [])

    def _tool_result(
        self, block: dict[str, Any], at: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        call_id = block.get("tool_use_id")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(f"'{at}.tool_use_id' is required", param=f"{at}.tool_use_id")
        content = block.get("content")
        texts: list[str] = []
        images: list[dict[str, Any]] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for k, inner in enumerate(content):
                inner_at = f"{at}.content[{k}]"
                for part in self._part(inner, _kind(inner, inner_at), inner_at):
                    if part["type"] == "text":
                        texts.append(part["text"])
                    else:
                        images.append(part)
        elif content is not None:
            raise BadRequest(f"'{at}.content' must be a string or an array", param=f"{at}.content")
        text = "\n".join(texts)
        if block.get("is_error") is True:
            text = f"Error: {text}"
        return {"role": "tool", "tool_call_id": call_id, "content": text}, images

    def _part(self, block: dict[str, Any], kind: str, at: str) -> list[dict[str, Any]]:
        """One user content block as OpenAI content parts."""
        if kind == "text":
            return [{"type": "text", "text": _text(block, at)}]
        if kind == "image":
            return [{"type": "image_url", "image_url": {"url": _image_url(block, at)}}]
        if kind == "document":
            return self._document(block, at)
        self._native(f"'{at}' of type {kind!r}", block)
        return []

    def _document(self, block: dict[str, Any], at: str) -> list[dict[str, Any]]:
        source = _source(block, at)
        kind = source.get("type")
        if kind == "base64" and isinstance(source.get("data"), str):
            media = source.get("media_type") or "application/pdf"
            data = f"data:{media};base64,{source['data']}"
            name = block.get("title") if isinstance(block.get("title"), str) else "document.pdf"
            return [{"type": "file", "file": {"filename": name, "file_data": data}}]
        if kind == "text" and isinstance(source.get("data"), str):
            return [{"type": "text", "text": source["data"]}]
        if kind == "content" and isinstance(source.get("content"), (str, list)):
            return [{"type": "text", "text": self._text_only(source["content"], f"{at}.source")}]
        if kind == "url" and isinstance(source.get("url"), str):
            self._native(f"'{at}': a document by URL")
            return [{"type": "file", "file": {"filename": "document", "file_data": source["url"]}}]
        raise BadRequest(f"'{at}.source' is not a document source", param=f"{at}.source")

    # -- tools -------------------------------------------------------------------------------
    def _tools(self, tools: Any) -> list[dict[str, Any]]:
        if tools is None:
            return []
        if not isinstance(tools, list):
            raise BadRequest("'tools' must be an array", param="tools")
        out = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise BadRequest(f"'tools[{i}]' must be an object with a 'name'", param="tools")
            if tool.get("type") not in (None, "custom"):  # a server tool: web search, bash, ...
                self._native(f"the {tool['type']!r} tool", tool)
                continue
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise BadRequest(
                    f"'tools[{i}].input_schema' must be a JSON schema object", param="tools"
                )
            function: dict[str, Any] = {"name": tool["name"], "parameters": schema}
            if isinstance(tool.get("description"), str):
                function["description"] = tool["description"]
            out.append({"type": "function", "function": function})
        return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    kind = choice.get("type") if isinstance(choice, dict) else None
    out: dict[str, Any]
    if kind == "auto":
        out = {"tool_choice": "auto"}
    elif kind == "any":
        out = {"tool_choice": "required"}
    elif kind == "none":
        out = {"tool_choice": "none"}
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    else:
        raise BadRequest(
            '\'tool_choice\' must be {"type": "auto" | "any" | "none"} or '
            '{"type": "tool", "name": ...}',
            param="tool_choice",
        )
    if choice.get("disable_parallel_tool_use") is True and kind in ("auto", "any", "tool"):
        out["parallel_tool_calls"] = False
    return out


def _tool_call(block: dict[str, Any], at: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise BadRequest(f"'{at}' must be a tool_use block with an 'id' and a 'name'", param=at)
    if not isinstance(arguments, dict):
        raise BadRequest(f"'{at}.input' must be an object", param=f"{at}.input")
    function = {"name": name, "arguments": orjson.dumps(arguments).decode()}
    return {"id": call_id, "type": "function", "function": function}


def _kind(block: Any, at: str) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise BadRequest(f"'{at}' must be a content block with a 'type'", param=at)
    return block["type"]  # type: ignore[no-any-return]


def _text(block: dict[str, Any], at: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise BadRequest(f"'{at}.text' must be a string", param=f"{at}.text")
    return text


def _source(block: dict[str, Any], at: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise BadRequest(f"'{at}.source' must be an object", param=f"{at}.source")
    if source.get("type") == "file":
        raise BadRequest(
            f"'{at}.source': uploaded files are not supported here; send the content as base64",
            param=f"{at}.source",
        )
    return source


def _image_url(block: dict[str, Any], at: str) -> str:
    source = _source(block, at)
    if source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and media.startswith("image/") and isinstance(data, str):
            return f"data:{media};base64,{data}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        return source["url"]  # type: ignore[no-any-return]
    raise BadRequest(
        f"'{at}.source' must be a base64 image with an image/* media_type, or a URL",
        param=f"{at}.source",
    )
