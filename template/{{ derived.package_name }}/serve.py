"""`serve`: the trained model behind an OpenAI-compatible HTTP API (FastAPI on uvicorn).

Endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (with "stream": true, server-sent
events in OpenAI's chunk format ending with `data: [DONE]`), GET /health, GET /metrics (Prometheus) and
GET /openapi.json (the schema of them all, api_schema.py).
Concurrent requests decode together: scheduler.py runs one step for all of them and lets them join and leave
between steps. A chat request is rendered by the one chat format, chat_format.render_ids.

Safety: the server listens on 127.0.0.1 unless told otherwise and warns when it listens elsewhere without an
API key; the key (only as `Authorization: Bearer KEY`, on /v1/* and /metrics) is compared in constant time.
Only the Host names of allowed_hosts are served (Starlette's TrustedHostMiddleware), so a web page that
rebinds its own DNS name to this machine cannot reach it from a browser; POST bodies must be application/json
(a page may send text/plain without asking first). Request bodies (size, time to arrive, nesting), prompt
tokens, max_tokens and waiting requests are limited, and every refusal is an OpenAI-style error body with a
4xx status: 400 for malformed JSON and bad fields, 401 for a wrong key, 404 for an unknown model, 408 for a
body that is too slow, 413 for a body too large, 415 for another content type, 429 when the queue is full.
A request's parameters are checked before it joins the batch, and a failure while decoding ends only the
requests it concerns (scheduler.py). A client that disconnects frees its row, streaming or not. On SIGTERM
uvicorn stops accepting connections, lets the requests in flight finish (up to DRAIN_SECONDS), and the
process exits 0.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from .api_schema import ChatCompletion, ChatRequest, Completion, CompletionRequest, Health, ModelList, answers, \
    with_request_bodies
from .chat_format import STOP, check_messages, render_ids
from .decoding import Decoder, Sequence, TextStream
from .generate import load_model, model_name
from .model import GPT
from .sampling import SamplingParams
from .scheduler import Busy, Request as Job, Scheduler
from .tokenizer import BPETokenizer

DRAIN_SECONDS = 30  # after SIGTERM, how long requests in flight may take to finish
DISCONNECT_POLL_SECONDS = 0.25  # how often a handler asks whether its client is still there
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Limits:
    """What one request, and the server as a whole, may ask for."""

    max_prompt_tokens: int  # at most block_size - 1: one token must be left to generate
    max_tokens: int  # new tokens per request
    max_body_bytes: int = 1 << 20
    body_seconds: float = 10.0  # how long a client may take to send its request body
    max_batch: int = 8  # requests decoding together (rows of the KV cache)
    max_waiting: int = 64  # requests waiting for a row; more get 429


class ApiError(Exception):
    """An OpenAI-style error: {"error": {"message", "type", "param", "code"}} with an HTTP status."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 kind: str = "invalid_request_error", close: bool = False):
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": kind, "param": param, "code": code}}
        # close: the body was not read to its end, so the connection cannot carry another request
        self.headers = {"Connection": "close"} if close else None


class Metrics:
    """Prometheus metrics of one app (its own registry, so two apps in one process do not collide)."""

    def __init__(self, scheduler: Scheduler):
        self.registry = CollectorRegistry()
        self.requests = Counter("requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                registry=self.registry)
        self.prompt_tokens = Counter("prompt_tokens", "prompt tokens read", registry=self.registry)
        self.completion_tokens = Counter("completion_tokens", "tokens generated", registry=self.registry)
        self.ttft = Histogram("time_to_first_token_seconds", "from request to first token", registry=self.registry,
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        Gauge("running_requests", "requests decoding now", registry=self.registry).set_function(
            lambda: len(scheduler.running))
        Gauge("waiting_requests", "requests waiting for a row", registry=self.registry).set_function(
            lambda: len(scheduler.waiting))


def allowed_hosts(bound: str) -> list[str]:
    """The Host names served when listening on `bound`: the loopback names and `bound`; on a wildcard address also
    this machine's names and addresses. Others are refused, as a DNS-rebinding page in a browser would send."""
    names = {*LOOPBACK_HOSTS, bound}
    if bound in WILDCARD_HOSTS:
        names |= {socket.gethostname(), socket.getfqdn()}
        try:
            names |= {str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
        except OSError:  # a host name that does not resolve: its name alone
            pass
    return sorted(names - {""})


def create_app(model: GPT, tok: BPETokenizer, model_id: str, limits: Limits, api_key: str | None = None,
               hosts: list[str] | None = None) -> FastAPI:
    """The FastAPI app serving `model` (in eval mode) under the name `model_id`, to requests whose Host is in
    `hosts` (default: the loopback names)."""
    scheduler = Scheduler(Decoder(model, limits.max_batch, tok.eot_id), limits.max_waiting)
    # A prompt of more bytes than this has more tokens than the server reads: refused before it is encoded.
    max_prompt_bytes = limits.max_prompt_tokens * max(len(tok.token_bytes(i)) for i in range(tok.vocab_size))
    metrics = Metrics(scheduler)
    block = model.config.block_size
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        yield
        scheduler.stop()  # uvicorn has drained the requests in flight by now

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts or LOOPBACK_HOSTS))

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        metrics.requests.labels(request.url.path, str(e.status)).inc()
        return JSONResponse(e.body, status_code=e.status, headers=e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:  # unknown path, wrong method
        return await api_error(request, ApiError(e.status_code, str(e.detail)))

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # constant time: no timing side channel
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise ApiError(401, "invalid API key: send it as 'Authorization: Bearer KEY'", "invalid_api_key")

    @app.get("/health", responses=answers(Health))
    async def health() -> dict:
        return {"status": "ok", "running": len(scheduler.running), "waiting": len(scheduler.waiting)}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        authorize(request)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> dict:
        authorize(request)
        if app.openapi_schema is None:
            bodies = {"/v1/completions": CompletionRequest, "/v1/chat/completions": ChatRequest}
            app.openapi_schema = with_request_bodies(get_openapi(title=model_id, version="1", routes=app.routes),
                                                     bodies, model_id)
        return app.openapi_schema

    @app.get("/v1/models", responses=answers(ModelList, 401))
    async def models(request: Request) -> dict:
        authorize(request)
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created,
                                            "owned_by": "llm-blueprint", "max_model_len": block}]}

    refusals = (400, 401, 404, 408, 413, 415, 429)

    @app.post("/v1/completions", responses=answers(Completion, *refusals, stream=True))
    async def completions(request: Request) -> Response:
        authorize(request)
        body = await read_json(request, limits)
        prompt = body.get("prompt", "")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "prompt must be a string (one prompt per request)", param="prompt")
        check_prompt_size([prompt], "prompt")
        ids = tok.encode(prompt) if prompt else [tok.eot_id]  # empty: the start of a new document
        return await answer(request, body, ids, "text_completion", default_max_tokens=16, stop=())

    @app.post("/v1/chat/completions", responses=answers(ChatCompletion, *refusals, stream=True))
    async def chat_completions(request: Request) -> Response:
        authorize(request)
        body = await read_json(request, limits)
        try:
            messages = check_messages(body.get("messages"), "request")
        except ValueError as e:
            raise ApiError(400, str(e), param="messages") from None
        check_prompt_size([m["content"] for m in messages], "messages")
        ids = render_ids(tok, messages)
        return await answer(request, body, ids, "chat.completion", default_max_tokens=None, stop=STOP)

    def check_prompt_size(texts: list[str], param: str) -> None:
        """Refuse text that is not Unicode (lone surrogates) or too long to fit, before the tokenizer spends time
        on it: a megabyte of prompt would hold up every other request on the event loop."""
        try:
            size = sum(len(text.encode()) for text in texts)
        except UnicodeEncodeError as e:
            raise ApiError(400, f"the {param} is not valid Unicode: {e.reason}", param=param) from None
        if size > max_prompt_bytes:
            raise ApiError(400, f"the {param} has {size:,} bytes, more than the {limits.max_prompt_tokens} tokens "
                                "this server reads", "context_length_exceeded", param)

    async def answer(request: Request, body: dict, ids: list[int], kind: str, default_max_tokens: int | None,
                     stop: tuple[str, ...]) -> Response:
        """Check the request against the limits, queue it, and answer in one piece or as a stream."""
        if body.get("model") != model_id:
            raise ApiError(404, f"model {body.get('model')!r} does not exist; this server serves {model_id!r}",
                           "model_not_found", "model")
        if len(ids) > limits.max_prompt_tokens:
            raise ApiError(400, f"the prompt has {len(ids)} tokens; this server reads at most "
                                f"{limits.max_prompt_tokens}", "context_length_exceeded", "prompt")
        params = sampling_params(body, len(ids), default_max_tokens, stop)
        try:
            job = scheduler.submit(Sequence(ids, params, TextStream(tok, params.stop)))
        except Busy as e:
            raise ApiError(429, str(e), "server_busy", kind="rate_limit_error") from None
        metrics.prompt_tokens.inc(len(ids))
        meta = {"id": f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}",
                "created": int(time.time()), "model": model_id}
        metrics.requests.labels(request.url.path, "200").inc()
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(stream(request, job, kind, meta, include_usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        text = [piece async for piece in events_of(request, job)]
        reason = job.seq.finish_reason
        if reason is None:  # the client went away
            return Response(status_code=499)
        choice = ({"index": 0, "message": {"role": "assistant", "content": "".join(text)}, "finish_reason": reason}
                  if kind == "chat.completion" else
                  {"index": 0, "text": "".join(text), "finish_reason": reason, "logprobs": None})
        return JSONResponse({**meta, "object": kind, "choices": [choice], "usage": usage(job)})

    def sampling_params(body: dict, prompt_tokens: int, default_max_tokens: int | None,
                        stop: tuple[str, ...]) -> SamplingParams:
        room = block - prompt_tokens  # what the context window leaves for the answer
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is None:
            max_tokens = min(room, limits.max_tokens, default_max_tokens or room)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise ApiError(400, f"max_tokens must be a positive integer, got {max_tokens!r}", param="max_tokens")
        if max_tokens > limits.max_tokens:
            raise ApiError(400, f"max_tokens is {max_tokens}; this server generates at most {limits.max_tokens}",
                           param="max_tokens")
        if max_tokens > room:
            raise ApiError(400, f"{prompt_tokens} prompt tokens + max_tokens {max_tokens} exceed the model's "
                                f"{block}-token context", "context_length_exceeded", "max_tokens")
        if body.get("n", 1) != 1:
            raise ApiError(400, "n must be 1", param="n")
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) for s in stops):
            raise ApiError(400, "stop must be a string or a list of at most 4 strings", param="stop")
        fields = {"temperature": (int, float), "top_p": (int, float), "top_k": (int,),
                  "repetition_penalty": (int, float), "seed": (int,)}
        given = {k: body[k] for k in fields if body.get(k) is not None}
        for k, v in given.items():
            if not isinstance(v, fields[k]) or isinstance(v, bool):
                raise ApiError(400, f"{k} must be a number, got {v!r}", param=k)
        try:  # OpenAI's defaults: temperature 1, top_p 1, no top-k
            return SamplingParams(max_tokens=max_tokens, stop=tuple(stops) + stop,
                                  **{"temperature": 1.0, "top_k": None, **given})
        except ValueError as e:
            raise ApiError(400, str(e)) from None

    async def events_of(request: Request, job: Job) -> AsyncIterator[str]:
        """The job's new text as it comes: everything queued since the last read, joined, so a client that reads
        slowly gets fewer, longer pieces. Cancels the job if the client disconnects or the handler is cancelled."""
        first, checked = True, time.monotonic()
        try:
            while True:
                try:
                    events = [await asyncio.wait_for(job.events.get(), timeout=DISCONNECT_POLL_SECONDS)]
                except asyncio.TimeoutError:
                    events = []
                if time.monotonic() - checked > DISCONNECT_POLL_SECONDS:  # also while tokens keep coming
                    if await request.is_disconnected():
                        return
                    checked = time.monotonic()
                if not events:
                    continue
                while not job.events.empty():
                    events.append(job.events.get_nowait())
                if events[-1].error is not None:  # a failure is always the request's last event
                    raise ApiError(500, f"decoding failed: {events[-1].error}", kind="server_error")
                if first:
                    metrics.ttft.observe(time.monotonic() - job.submitted)
                    first = False
                metrics.completion_tokens.inc(len(events))
                yield "".join(e.text for e in events)
                if events[-1].finished:
                    return
        finally:
            if job.seq.finish_reason is None:
                scheduler.cancel(job)

    def usage(job: Job) -> dict[str, int]:
        n_prompt, n_out = len(job.seq.prompt), job.seq.generated
        return {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}

    async def stream(request: Request, job: Job, kind: str, meta: dict, include_usage: bool) -> AsyncIterator[str]:
        """Server-sent events: one chunk per piece of text, a last chunk with finish_reason, usage, [DONE]."""
        chat = kind == "chat.completion"
        chunk = {**meta, "object": "chat.completion.chunk" if chat else "text_completion"}

        def piece(text: str | None, reason: str | None) -> str:
            choice = ({"index": 0, "delta": {} if text is None else {"content": text}, "finish_reason": reason}
                      if chat else {"index": 0, "text": text or "", "finish_reason": reason, "logprobs": None})
            return sse({**chunk, "choices": [choice]})

        if chat:
            yield sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                             "finish_reason": None}]})
        try:
            async for text in events_of(request, job):
                if text:
                    yield piece(text, None)
        except ApiError as e:
            yield sse(e.body)
            return
        if job.seq.finish_reason is None:
            return
        yield piece(None, job.seq.finish_reason)
        if include_usage:
            yield sse({**chunk, "choices": [], "usage": usage(job)})
        yield "data: [DONE]\n\n"

    return app


def sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


async def read_json(request: Request, limits: Limits) -> dict:
    """The request body as a JSON object: 415 unless it is application/json, 413 past the size limit (counted as
    it arrives), 408 if it takes longer than limits.body_seconds to arrive, 400 if it is not JSON or is nested
    deeper than Python's recursion limit."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, f"the request body must be application/json, not {media_type or 'unlabelled'!r}",
                       close=True)
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body has {int(declared):,} bytes; the limit is {limit:,}", close=True)
    try:
        raw = await asyncio.wait_for(_read_body(request, limit), limits.body_seconds)
    except asyncio.TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {limits.body_seconds:g} s", close=True) from None
    except ClientDisconnect:  # nobody is left to answer, and nothing to log
        raise ApiError(400, "the client closed the connection before sending its body", close=True) from None
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is over the limit of {limit:,} bytes", close=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def serve(path: Path, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None, device: str = "auto",
          max_batch: int = 8, threads: int = 1) -> None:
    """Load the checkpoint at `path` and serve it until SIGTERM or Ctrl-C. `threads`: torch's threads for the
    CPU's matmuls (see cli.py's --threads)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {port}")
    torch.set_num_threads(threads)
    model, tok, _ = load_model(path, device)
    block = model.config.block_size
    limits = Limits(max_prompt_tokens=block - 1, max_tokens=block - 1, max_batch=max_batch)
    model_id = model_name(path)
    print(f"serving {model_id!r} ({path}) on http://{host}:{port}/v1", file=sys.stderr, flush=True)
    app = create_app(model, tok, model_id, limits, api_key, allowed_hosts(host))
    # uvicorn drains on SIGTERM, then raises the signal again for the handler it found: with this one, the
    # drained server ends normally (exit 0) instead of being killed by the signal.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=DRAIN_SECONDS)
