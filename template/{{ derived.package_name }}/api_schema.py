"""The server's OpenAPI schema (/openapi.json): what each endpoint of serve.py reads and answers, as pydantic models.

The handlers read and check requests themselves (size and time limits, one-line OpenAI-style errors), so these
models describe the API for clients and for fuzzing (tests/test_serve_fuzz.py runs schemathesis against them:
no 5xx, and every answer matches its schema); they never parse a request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

ERROR_STATUSES = {400: "malformed JSON or a bad field", 401: "a missing or wrong API key",
                  404: "an unknown model", 408: "a body slower than the time limit", 413: "a body over the size limit",
                  415: "a body that is not application/json", 429: "too many requests waiting"}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    error: ErrorDetail


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    """The fields both generation endpoints read (OpenAI's names and defaults, plus vLLM's top_k and
    repetition_penalty)."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    repetition_penalty: float | None = Field(None, gt=0)
    seed: int | None = Field(None, ge=0, lt=2**64)
    stop: str | list[str] | None = Field(None, max_length=4)
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None


class CompletionRequest(Sampling):
    prompt: str | list[str] = Field("", max_length=1)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"]
    running: int
    waiting: int


def answers(model: type[BaseModel], *errors: int, stream: bool = False) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: `model` with 200 (and server-sent events too if `stream`), ErrorBody with `errors`."""
    documented: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody, "description": ERROR_STATUSES[status]}
                                                   for status in errors}
    documented[200] = {"model": model}
    if stream:
        documented[200]["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
    return documented


def with_request_bodies(schema: dict[str, Any], bodies: dict[str, type[BaseModel]], model_id: str) -> dict[str, Any]:
    """FastAPI's `schema` with the JSON body of each POST path in `bodies`, naming `model_id` as the one model
    served (the routes read their bodies themselves, so FastAPI cannot know them)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, model in bodies.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        body["properties"]["model"] = {"type": "string", "enum": [model_id]}
        schema["paths"][path]["post"]["requestBody"] = {"required": True,
                                                        "content": {"application/json": {"schema": body}}}
    return schema
