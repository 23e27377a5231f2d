"""Google's Gemini API (generateContent), spoken to OpenAI clients.

The OpenAI chat body is rebuilt as a GenerateContentRequest: system messages
become `systemInstruction`, the other turns alternate `user` / `model` (same-role
neighbours merged, as Gemini wants), tool calls and tool results become
`functionCall` / `functionResponse` parts, and sampling options go into
`generationConfig`. Options Gemini has no equivalent for are dropped. Responses
come back as `chat.completion` bodies; streams are translated by `GoogleStream`.
"""

from __future__ import annotations

import base64
import contextlib
import time
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import orjson

from ..core.chat import ChatRequest, Usage
from ..core.errors import BadRequest, GatewayError, UpstreamError
from ..core.model import Model
from .base import Completion, UpstreamRequest, json_body, load_object, read_refusal, upstream_error
from .google_stream import (
    GoogleStream,
    completion_id,
    error_from_google,
    fault,
    finish_reason,
    prompt_blocked,
    read_parts,
    read_usage,
    tool_call,
)

# Gemini needs a mimeType for a URL; guessed from the extension, not fetched.
MIME_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "mp4": "video/mp4",
    "mov": "video/mov",
    "webm": "video/webm",
}
TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# Gemini 3 rejects replayed function calls without the model's thought signature; this
# documented placeholder is sent when the client did not keep the real one.
SKIP_SIGNATURE = "skip_thought_signature_validator"
# OpenAI option -> generationConfig field, copied when set.
SAMPLING = {"temperature": "temperature", "top_p": "topP", "seed": "seed", "n": "candidateCount"}
# Some Gemini models refuse penalties outright, so only non-zero ones are sent.
PENALTIES = {"presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty"}


class GoogleAdapter:
    def __init__(self, provider: str) -> None:
        self.provider = provider

    def chat_request(self, chat: ChatRequest, model: Model, api_key: str | None) -> UpstreamRequest:
        method = "streamGenerateContent?alt=sse" if chat.stream else "generateContent"
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if api_key:
            headers["x-goog-api-key"] = api_key
        if chat.stream:
            headers["accept"] = "text/event-stream"
        path = f"/v1beta/models/{model.upstream_id}:{method}"
        return UpstreamRequest(path, headers, json_body(gemini_body(chat)))

    def chat_response(self, body: bytes, model: Model) -> Completion:
        data = load_object(body, self.provider)
        if not isinstance(data, dict):
            raise UpstreamError(f"{self.provider} sent a response that is not an object")
        if "error" in data:
            raise error_from_google(self.provider, data["error"])
        candidates = data.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            raise prompt_blocked(self.provider, data) or UpstreamError(
                f"{self.provider} sent a response without candidates"
            )
        choices: list[dict[str, Any]] = []
        output: list[str] = []
        for position, candidate in enumerate(c for c in candidates if isinstance(c, dict)):
            texts, parts = read_parts(candidate)
            calls = [tool_call(part, n) for n, part in enumerate(parts)]
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(texts) if texts or not calls else None,
            }
            if calls:
                message["tool_calls"] = calls
            index = candidate.get("index")
            choices.append(
                {
                    "index": index if isinstance(index, int) else position,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(candidate.get("finishReason"), bool(calls)),
                }
            )
            output += texts + [v for c in calls for v in c["function"].values()]
        completion: dict[str, Any] = {
            "id": completion_id(data.get("responseId")),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model.id,
            "choices": choices,
        }
        usage: Usage | None = None
        if (read := read_usage(data.get("usageMetadata"))) is not None:
            usage, completion["usage"] = read
        return Completion(completion, usage, "".join(output))

    def chat_stream(self, chat: ChatRequest, model: Model) -> GoogleStream:
        return GoogleStream(self.provider, model.id, chat.include_usage, model.price)

    def error(self, status: int, body: bytes, retry_after: str | None) -> GatewayError:
        refusal = read_refusal(status, body)
        return upstream_error(refusal, retry_after, self.provider, fault(refusal))


# -- the request -----------------------------------------------------------------------------


def gemini_body(chat: ChatRequest) -> dict[str, Any]:
    """A GenerateContentRequest for an OpenAI chat request."""
    body = chat.body
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for the tool results
    for i, message in enumerate(body["messages"]):
        where, role = f"messages[{i}]", message["role"]
        if role in ("system", "developer"):
            system += _parts(message.get("content"), where, media=False)
            continue
        if role == "user":
            turn, parts = "user", _parts(message.get("content"), where)
        elif role == "assistant":
            turn, parts = "model", _assistant_parts(message, names, where)
        elif role in ("tool", "function"):
            turn, parts = "user", [_function_response(message, names, where)]
        else:
            raise BadRequest(f"'{where}.role' {role!r} is not supported", param=f"{where}.role")
        if not parts:
            continue
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"] += parts
        else:
            contents.append({"role": turn, "parts": parts})
    for content in contents:
        _sign_first_call(content)
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": system}
    if declarations := _declarations(body.get("tools")):
        request["tools"] = [{"functionDeclarations": declarations}]
    if (choice := body.get("tool_choice")) is not None:
        request["toolConfig"] = {"functionCallingConfig": _calling_config(choice)}
    if config := _generation_config(body, chat.completion_limit):
        request["generationConfig"] = config
    return request


def _parts(content: Any, where: str, media: bool = True) -> list[dict[str, Any]]:
    """Gemini parts for an OpenAI content string or content-part array."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise BadRequest(f"'{where}.content' must be a string or an array", param=where)
    parts: list[dict[str, Any]] = []
    for j, item in enumerate(content):
        kind = item.get("type") if isinstance(item, dict) else None
        at = f"{where}.content[{j}]"
        if kind in ("text", "refusal") and isinstance(text := item.get(kind), str):
            if text:
                parts.append({"text": text})
        elif media and kind == "image_url":
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_media(url, "image/jpeg", at))
        elif media and kind == "input_audio" and isinstance(audio := item.get("input_audio"), dict):
            if not isinstance(data := audio.get("data"), str):
                raise BadRequest(f"'{at}.input_audio.data' must be base64 text", param=at)
            parts.append(_inline(f"audio/{audio.get('format') or 'wav'}", data))
        elif media and kind == "file" and isinstance(file := item.get("file"), dict):
            if not isinstance(data := file.get("file_data"), str):
                raise BadRequest(
                    f"'{at}' must carry file_data; file ids are not supported", param=at
                )
            if not data.startswith("data:"):
                mime = _guess_mime(str(file.get("filename") or ""), "application/pdf")
                data = f"data:{mime};base64,{data}"
            parts.append(_media(data, "application/pdf", at))
        else:
            raise BadRequest(f"'{at}' has a content type this model cannot take", param=at)
    return parts


def _media(url: Any, default_mime: str, where: str) -> dict[str, Any]:
    """A data URL becomes inline bytes; an http(s) or gs:// URL, a file reference."""
    if not isinstance(url, str) or not url:
        raise BadRequest(f"'{where}' needs a url", param=where)
    if url.startswith("data:"):
        header, _, payload = url[5:].partition(",")
        mime, *flags = header.split(";")
        if "base64" not in flags:
            payload = base64.b64encode(unquote_to_bytes(payload)).decode()
        return _inline(mime or "text/plain", payload)
    if urlsplit(url).scheme in ("http", "https", "gs"):
        return {
            "fileData": {"mimeType": _guess_mime(urlsplit(url).path, default_mime), "fileUri": url}
        }
    raise BadRequest(f"'{where}' must be a data URL or an http(s) URL", param=where)


def _inline(mime: str, data: str) -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime, "data": data}}


def _guess_mime(path: str, default: str) -> str:
    _, dot, extension = path.rpartition(".")
    return MIME_TYPES.get(extension.lower(), default) if dot else default


def _assistant_parts(
    message: dict[str, Any], names: dict[str, str], where: str
) -> list[dict[str, Any]]:
    parts = _parts(message.get("content"), where, media=False)
    calls = message.get("tool_calls") or []
    if isinstance(legacy := message.get("function_call"), dict):
        calls = [*calls, {"type": "function", "function": legacy}]
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(name := function.get("name"), str):
            raise BadRequest(f"'{at}' must be a function call with a name", param=at)
        part: dict[str, Any] = {
            "functionCall": {"name": name, "args": _arguments(function.get("arguments"), at)}
        }
        extra = call.get("extra_content")
        google = extra.get("google") if isinstance(extra, dict) else None
        signature = google.get("thought_signature") if isinstance(google, dict) else None
        if isinstance(signature, str) and signature:
            part["thoughtSignature"] = signature
        if isinstance(call.get("id"), str):
            names[call["id"]] = name
        parts.append(part)
    return parts


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        args = orjson.loads(raw) if isinstance(raw, str) else None
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        param = f"{where}.function.arguments"
        raise BadRequest(f"'{param}' must be a JSON object", param=param)
    return args


def _function_response(
    message: dict[str, Any], names: dict[str, str], where: str
) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = (names.get(call_id) if isinstance(call_id, str) else None) or message.get("name")
    if not isinstance(name, str) or not name:
        param = f"{where}.tool_call_id"
        raise BadRequest(f"'{param}' matches no earlier assistant tool call", param=param)
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    value: Any = content if isinstance(content, str) else ""
    with contextlib.suppress(orjson.JSONDecodeError):
        value = orjson.loads(value)
    return {"functionResponse": {"name": name, "response": {"content": value}}}


def _sign_first_call(content: dict[str, Any]) -> None:
    """The first function call of a model turn must carry a thought signature (Gemini 3)."""
    if content["role"] != "model":
        return
    first = next((p for p in content["parts"] if "functionCall" in p), None)
    if first is not None and "thoughtSignature" not in first:
        first["thoughtSignature"] = SKIP_SIGNATURE


def _declarations(tools: Any) -> list[dict[str, Any]]:
    """Function tools as declarations; OpenAI's `parameters` are JSON Schema, as is
    `parametersJsonSchema` (Gemini's `parameters` takes only an OpenAPI subset)."""
    declarations: list[dict[str, Any]] = []
    for k, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            continue  # custom and built-in tools have no Gemini equivalent
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRequest(f"'tools[{k}].function' needs a name", param=f"tools[{k}]")
        declaration: dict[str, Any] = {"name": function["name"]}
        if isinstance(function.get("description"), str):
            declaration["description"] = function["description"]
        if isinstance(function.get("parameters"), dict):
            declaration["parametersJsonSchema"] = function["parameters"]
        declarations.append(declaration)
    return declarations


def _calling_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str) and choice in TOOL_CHOICE_MODES:
        return {"mode": TOOL_CHOICE_MODES[choice]}
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"mode": "ANY", "allowedFunctionNames": [function["name"]]}
    raise BadRequest(
        "'tool_choice' must be auto, none, required or a named function", param="tool_choice"
    )


def _generation_config(body: dict[str, Any], limit: int | None) -> dict[str, Any]:
    config = {theirs: body[ours] for ours, theirs in SAMPLING.items() if body.get(ours) is not None}
    config |= {theirs: body[ours] for ours, theirs in PENALTIES.items() if body.get(ours)}
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else stop
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        config["responseMimeType"] = "application/json"
    elif kind == "json_schema":
        schema = response_format.get("json_schema")  # type: ignore[union-attr]
        config["responseMimeType"] = "application/json"
        if isinstance(schema, dict) and isinstance(schema.get("schema"), dict):
            config["responseJsonSchema"] = schema["schema"]
    return config
