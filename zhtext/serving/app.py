"""The HTTP server: a FastAPI app over the served models, run by uvicorn (``zhtext serve``).

``POST /segment``, ``/keywords``, ``/tag``, ``/title``, ``/generate``, ``/embed``, ``/similar``
(see :mod:`zhtext.serving.endpoints` for their records); ``GET /health``, ``GET /models`` (what
is loaded, its settings, and each model's batching figures), and FastAPI's ``/docs`` and
``/openapi.json``. Every failure is ``{"error": "..."}`` with a 4xx status for a bad request
(400 invalid JSON, 404 unknown endpoint or model not loaded, 405, 413 too big, 422 wrong types or
values, 429 queue full), 503 while stopping, 500 if a model fails.

SIGTERM (or Ctrl-C) stops taking connections, lets the requests in flight finish (up to
``shutdown_timeout`` seconds), then the model workers, and the process ends.
"""

# (no `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime)

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from zhtext.errors import ZhtextError
from zhtext.serving.batching import Batcher, Busy, Stopping
from zhtext.serving.endpoints import ENDPOINTS, Endpoint, GenerateRequest, generate_pieces
from zhtext.serving.limits import BodyLimit, Limits, RequestError, check_texts
from zhtext.serving.models import Served, load_models

__all__ = ["ServeOptions", "build_app", "create_app", "serve"]

_ENV = "ZHTEXT_SERVE_SPEC"  # the spec, for the worker processes of --workers N
log = logging.getLogger("zhtext.serve")

# Which endpoint needs which model, for the message when it is not loaded.
_HOW = {
    "tag": "--model-tag DIR",
    "title": "--model-title DIR",
    "generate": "--model-generate DIR",
    "embed": "--model-embed NAME",
    "similar": "--index FILE.npy --texts FILE",
}


class ServeOptions:
    """How requests are batched and limited: ``max_batch`` texts per gathered batch (1: no
    batching), ``max_wait_ms`` the oldest request waits for company, ``max_queue`` requests
    waiting per model; ``limits`` (:class:`~zhtext.serving.limits.Limits`)."""

    def __init__(
        self,
        max_batch: int = 64,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        limits: Limits | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or not max_wait_ms >= 0:
            raise ZhtextError("max_batch and max_queue must be >= 1 and max_wait_ms >= 0")
        self.max_batch, self.max_wait_ms, self.max_queue = max_batch, max_wait_ms, max_queue
        self.limits = limits or Limits()

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait_ms,
            "max_queue": self.max_queue,
            **vars(self.limits),
        }


def create_app(served: Served, options: ServeOptions | None = None) -> Any:
    """The ASGI app serving ``served`` (from :func:`~zhtext.serving.models.load_models`): one
    worker thread per model, started now, stopped when the app shuts down."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    options = options or ServeOptions()
    batchers = {
        name: Batcher(name, options.max_batch, options.max_wait_ms, options.max_queue)
        for name in served.names()
    }
    state = {"stopping": False, "started": time.time()}

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        state["stopping"] = True
        for batcher in batchers.values():  # what is queued still runs; new work gets 503
            await asyncio.to_thread(batcher.close)

    app = FastAPI(title="zhtext", summary="Chinese NLP models over HTTP", lifespan=lifespan)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        bad_json = [p for p in problems if p.get("type") == "json_invalid"]
        if bad_json:
            detail = bad_json[0].get("ctx", {}).get("error", "")
            return error(400, f"invalid JSON{': ' + str(detail) if detail else ''}")
        return error(422, "; ".join(dict.fromkeys(_problem(p) for p in problems[:4])))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return error(exc.status_code, message)

    @app.get("/health", summary="Whether the server is up, and each model's queue")
    async def health() -> dict:
        return {
            "status": "stopping" if state["stopping"] else "ok",
            "uptime_s": round(time.time() - state["started"], 3),
            "models": {
                name: {"running": b.running, "queued": b.queued} for name, b in batchers.items()
            },
        }

    @app.get("/models", summary="The models loaded, their settings, and their batching figures")
    async def models() -> dict:
        listing = {}
        for name, batcher in batchers.items():
            settings = (
                served.index.settings
                if name == "similar" and served.index
                else served.settings[name]
            )
            listing[name] = {
                "endpoints": [f"/{e.name}" for e in ENDPOINTS.values() if e.model == name],
                "settings": settings,
                "stats": batcher.stats.as_dict(),
            }
        return {"models": listing, "serving": options.as_dict()}

    for endpoint in ENDPOINTS.values():
        _add_route(app, endpoint, served, batchers, options.limits, error)
    return BodyLimit(_Wrapped(app), options.limits.max_body_bytes)


class _Wrapped:
    """The FastAPI app behind the body limit; ``.app`` reaches it (tests, the OpenAPI schema)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _problem(problem: dict) -> str:
    loc = [str(part) for part in problem.get("loc", ())[1:]]
    if not loc:
        if problem.get("type") == "missing":
            return 'the body must be a JSON object with "text"'
        return f"body: {problem.get('msg', 'invalid')}"
    if loc[0] == "text":  # (a union: pydantic names each of its branches)
        return "text: must be a string or a list of strings"
    return f"{'.'.join(loc)}: {problem.get('msg', 'invalid')}"


def _add_route(
    app: Any,
    endpoint: Endpoint,
    served: Served,
    batchers: dict[str, Batcher],
    limits: Limits,
    error: Any,
) -> None:
    from fastapi.responses import Response, StreamingResponse

    run = functools.partial(endpoint.run, served)
    render = functools.partial(endpoint.render, served)

    async def handle(req: Any) -> Any:
        batcher = batchers.get(endpoint.model)
        if batcher is None:
            raise RequestError(
                404,
                f"the {endpoint.model} model is not loaded (start the server "
                f"with {_HOW.get(endpoint.model, endpoint.model)})",
            )
        texts = check_texts(req.text, limits)
        options = endpoint.options(served, req)
        try:
            if isinstance(req, GenerateRequest) and req.stream:
                if options.beam > 1:
                    raise RequestError(422, 'beam search cannot be streamed: give "stream": false')
                lines = batcher.open_stream(
                    texts, options, functools.partial(generate_pieces, served)
                )
                return StreamingResponse(_ndjson(lines), media_type="application/x-ndjson")
            records = await batcher.submit((endpoint.name, options), texts, options, run, render)
        except Busy as exc:
            return error(429, str(exc))
        except Stopping as exc:
            return error(503, str(exc))
        except RequestError:
            raise
        except ZhtextError as exc:
            return error(500, str(exc))
        except Exception as exc:
            log.exception("%s failed", endpoint.name)
            return error(500, f"internal error: {type(exc).__name__}: {exc}")
        if isinstance(req.text, str) and len(records) == 1:
            body = records[0]
        else:
            body = "[" + ", ".join(records) + "]"
        return Response(body, media_type="application/json")

    handle.__annotations__ = {"req": endpoint.request, "return": Any}
    handle.__name__ = endpoint.name
    app.post(f"/{endpoint.name}", summary=endpoint.summary, response_class=Response)(handle)


async def _ndjson(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        async for line in lines:
            yield line + "\n"
    except Exception as exc:  # noqa: BLE001  (the status is sent: the error is the last line)
        yield json.dumps({"error": str(exc)}, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------- running it


def build_app(spec: dict[str, Any]) -> Any:
    """The app of a spec (what ``zhtext serve`` was given): the models loaded, the options set."""
    served = load_models(
        spec["settings"], spec.get("index"), spec.get("texts"), spec.get("encoding")
    )
    limits = Limits(**spec.get("limits", {}))
    return create_app(served, ServeOptions(**spec.get("batching", {}), limits=limits))


def app_from_env() -> Any:
    """The app of a worker process of ``--workers N`` (uvicorn's factory): the spec comes in the
    environment."""
    return build_app(json.loads(os.environ[_ENV]))


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on such sockets, and without it a response
    # written in two parts waits for the client's delayed ACK (40 ms a request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ZhtextError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve(
    spec: dict[str, Any],
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
    shutdown_timeout: float = 30.0,
    on_ready: Any = None,
) -> None:
    """Serve ``spec`` (see :func:`build_app`) until SIGTERM or Ctrl-C. One worker loads the models
    here, before listening (a bad model fails first); ``workers`` > 1 are processes, each
    loading its own. ``on_ready(url)`` is called once the address is bound."""
    import uvicorn

    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
    settings = {
        "log_level": log_level,
        "timeout_graceful_shutdown": shutdown_timeout,
        "access_log": log_level in ("info", "debug"),
    }
    if workers == 1:
        try:
            app = build_app(spec)
        except BaseException:
            sock.close()
            raise
        config = uvicorn.Config(app, lifespan="on", **settings)
        if on_ready is not None:
            on_ready(url)
        uvicorn.Server(config).run(sockets=[sock])
        return
    os.environ[_ENV] = json.dumps(spec)
    config = uvicorn.Config(
        "zhtext.serving.app:app_from_env",
        factory=True,
        workers=workers,
        lifespan="on",
        **settings,
    )
    if on_ready is not None:
        on_ready(url)
    from uvicorn.supervisors import Multiprocess

    Multiprocess(config, sockets=[sock]).run()  # each process serves the one bound socket
