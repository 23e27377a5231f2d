"""Anthropic's Messages API behind the OpenAI chat interface.

Requests are rebuilt, not passed through: system and developer messages become
the top-level `system`; turns of the same role merge (Anthropic requires
user/assistant alternation); tool calls and tool results become tool_use and
tool_result blocks. Fields with no Anthropic counterpart (logprobs, seed,
penalties, ...) are dropped, except `n` > 1, which is refused. `response_format`
becomes a system instruction asking for JSON only (with the schema when given):
it works on every Claude model, but is a request rather than a guarantee.

The API version stays 2023-06-01: version 2026-10-21 refuses `temperature` and
`top_p`, which OpenAI clients send routinely.

A Messages request (`ChatRequest.native`) is not rebuilt: its own body goes up with
the model renamed (and the completion limit lowered when a budget says so), its
`anthropic-version` and `anthropic-beta` headers forwarded, and the upstream's answer
and events come back as they are (`Completion.native`, `AnthropicStream(native=True)`).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..core.chat import ChatRequest
from ..core.errors import BadRequest, GatewayError, UpstreamError
from ..core.model import Model
from .anthropic_stream import (
    AnthropicStream,
    error_from_anthropic,
    fault,
    finish_reason,
    openai_usage,
    read_counts,
    usage_from_counts,
)
from .base import Completion, UpstreamRequest, json_body, load_object, read_refusal, upstream_error

API_VERSION = "2023-06-01"  # see the module docstring before moving it
DEFAULT_MAX_TOKENS = 8192  # Anthropic requires a limit; OpenAI clients often send none
# Fields of a Messages body that the counting endpoint refuses.
COUNT_DROPS = ("max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k",
               "metadata", "service_tier")  # fmt: skip
JSON_ONLY = "Respond with a single JSON value and nothing else: no prose, no code fences."


class AnthropicAdapter:
    """OpenAI chat requests in, Anthropic Messages out, and back again."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def chat_request(self, chat: ChatRequest, model: Model, api_key: str | None) -> UpstreamRequest:
        headers = {
            "content-type": "application/json",
            "accept-encoding": "identity",
            "anthropic-version": API_VERSION,
        }
        if chat.native is not None:
            body = {**chat.native, "model": model.upstream_id}
            if chat.completion_limit is not None:
                body["max_tokens"] = chat.completion_limit
            headers.update(chat.native_headers)
        else:
            body = request_body(chat, model.upstream_id)
        if api_key:
            headers["x-api-key"] = api_key
        if chat.stream:
            headers["accept"] = "text/event-stream"
        return UpstreamRequest("/v1/messages", headers, json_body(body))

    def chat_response(self, body: bytes, model: Model) -> Completion:
        data = load_object(body, self.provider)
        if isinstance(data, dict) and data.get("type") == "error":
            raise error_from_anthropic(self.provider, data.get("error"))
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise UpstreamError(f"{self.provider} sent a response that is not a message")
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in data["content"]:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif block.get("type") == "tool_use":
                arguments = orjson.dumps(block.get("input") or {}).decode()
                calls.append(
                    {
                        "id": str(block.get("id") or ""),
                        "type": "function",
                        "function": {"name": str(block.get("name") or ""), "arguments": arguments},
                    }
                )
        text = "".join(texts)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if calls and not texts else text,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish_reason(data.get("stop_reason")),
        }
        out: dict[str, Any] = {
            "id": f"chatcmpl-{data.get('id') or ''}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model.id,
            "choices": [choice],
        }
        counts = read_counts(data.get("usage"))
        usage = usage_from_counts(counts) if "output_tokens" in counts else None
        if usage is not None:
            out["usage"] = openai_usage(usage)
        # Tool calls count as output too, should the tokens have to be estimated.
        generated = [text, *(c["function"][k] for c in calls for k in ("name", "arguments"))]
        return Completion(out, usage, "".join(generated), native=body)

    def chat_stream(self, chat: ChatRequest, model: Model) -> AnthropicStream:
        native = chat.native is not None
        return AnthropicStream(
            self.provider, model.id, chat.include_usage, model.price, native=native
        )

    def count_tokens_request(
        self,
        native: dict[str, Any],
        headers: tuple[tuple[str, str], ...],
        model: Model,
        api_key: str | None,
    ) -> UpstreamRequest:
        """`POST /v1/messages/count_tokens` for a Messages body, as Anthropic counts it."""
        body = {k: v for k, v in native.items() if k not in COUNT_DROPS}
        body["model"] = model.upstream_id
        sent = {"content-type": "application/json", "accept-encoding": "identity"}
        sent["anthropic-version"] = API_VERSION
        sent.update(headers)
        if api_key:
            sent["x-api-key"] = api_key
        return UpstreamRequest("/v1/messages/count_tokens", sent, json_body(body))

    def error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError:
        refusal = read_refusal(status, body)
        return upstream_error(refusal, retry_after, self.provider, fault(refusal))


# -- the request ------------------------------------------------------------------------------
def request_body(chat: ChatRequest, upstream_id: str) -> dict[str, Any]:
    """An OpenAI chat body as an Anthropic Messages body."""
    if chat.n > 1:
        raise BadRequest("Anthropic models return one choice; 'n' must be 1", param="n")
    body = chat.body
    system, messages = _conversation(body["messages"])
    instruction = _format_instruction(body.get("response_format"))
    if instruction:
        system.append(instruction)
    limit = chat.completion_limit or DEFAULT_MAX_TOKENS  # Anthropic's only name for it
    out: dict[str, Any] = {"model": upstream_id, "max_tokens": limit}
    if system:
        out["system"] = "\n\n".join(system)
    out["messages"] = messages
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    if stops := [s for s in stops if isinstance(s, str) and s]:
        out["stop_sequences"] = stops
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    if isinstance(body.get("user"), str) and body["user"]:
        out["metadata"] = {"user_id": body["user"]}
    if chat.stream:
        out["stream"] = True
    return out


def _conversation(messages: list[Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(system texts, alternating turns): same-role messages merge into one turn."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where, role = f"messages[{i}]", message["role"]
        if role in ("system", "developer"):
            blocks = _blocks(message.get("content"), where)
            if any(block["type"] != "text" for block in blocks):
                raise BadRequest(f"'{where}.content' must be text", param=where)
            if text := "\n".join(block["text"] for block in blocks):
                system.append(text)
            continue
        if role == "user":
            blocks = _blocks(message.get("content"), where)
        elif role == "assistant":
            blocks = _blocks(message.get("content"), where) + _tool_uses(message, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        else:
            raise BadRequest(f"'{where}.role' {role!r} is not supported", param=f"{where}.role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # Anthropic wants tool results before any text of their turn
        turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return system, turns


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Text and image blocks of a message's content (string or parts); empty text dropped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise BadRequest(f"'{where}.content' must be a string or an array", param=where)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if isinstance(text, str) and text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{where}.content[{j}]"))
        else:
            raise BadRequest(
                f"'{where}.content[{j}]': parts of type {kind!r} are not supported "
                "for Anthropic models",
                param=f"{where}.content[{j}]",
            )
    return blocks


def _image(image: Any, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if isinstance(url, str) and url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if comma and encoding == "base64" and media_type.startswith("image/"):
            source = {"type": "base64", "media_type": media_type, "data": data}
            return {"type": "image", "source": source}
    elif isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise BadRequest(
        f"'{where}.image_url.url' must be an http(s) URL or a base64 image data URL",
        param=f"{where}.image_url",
    )


def _tool_uses(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = []
    for j, call in enumerate(message.get("tool_calls") or ()):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(call.get("id"), str)
            or not isinstance(function.get("name"), str)
        ):
            raise BadRequest(f"'{at}' must be a function call with an 'id' and a name", param=at)
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"'{at}.function.arguments' is not valid JSON", param=at) from exc
        if not isinstance(arguments, dict):
            raise BadRequest(f"'{at}.function.arguments' must be a JSON object", param=at)
        blocks.append(
            {"type": "tool_use", "id": call["id"], "name": function["name"], "input": arguments}
        )
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"'{where}.tool_call_id' is required", param=f"{where}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        block["content"] = _blocks(content, where)
    return block


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not tools:
        return []
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be an array", param="tools")
    out = []
    for i, tool in enumerate(tools):
        is_function = isinstance(tool, dict) and tool.get("type", "function") == "function"
        function = tool.get("function") if is_function else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"'tools[{i}]' must be a function tool with a name", param="tools")
        spec: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
        out.append(spec)
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice == "none":
        return {"type": "none"}
    if choice is None or choice == "auto":
        mapped: dict[str, Any] = {"type": "auto"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance(name := (choice.get("function") or {}).get("name"), str)
    ):
        mapped = {"type": "tool", "name": name}
    else:
        raise BadRequest("'tool_choice' is not supported for Anthropic models", param="tool_choice")
    if parallel is False:
        mapped["disable_parallel_tool_use"] = True
    elif choice is None:
        return None  # Anthropic's default is OpenAI's
    return mapped


def _format_instruction(response_format: Any) -> str | None:
    """`response_format` as words in the system prompt, for JSON modes."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        return JSON_ONLY
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return f"{JSON_ONLY} It must match this JSON schema: {orjson.dumps(schema).decode()}"
        return JSON_ONLY
    return None
