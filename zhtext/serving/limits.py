"""What a server accepts: the size of a body, the number and length of texts.

Every refusal is a :class:`RequestError`, answered as ``{"error": ...}`` with its 4xx status;
nothing a client sends can take the server down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zhtext.errors import ZhtextError

__all__ = ["BodyLimit", "Limits", "RequestError", "check_texts"]

# A body over the limit is still read (and thrown away) up to this many times the limit, so
# that the client, which sends it whole before reading, gets the 413; past that the connection
# is closed.
_DRAIN_FACTOR = 16


class RequestError(ZhtextError):
    """A request the server refuses: its HTTP status and one line saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """``max_body_bytes``: the largest request body; ``max_texts``: texts in one request;
    ``max_chars``: characters in one text."""

    max_body_bytes: int = 1 << 20
    max_texts: int = 256
    max_chars: int = 20_000

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ZhtextError(f"{name} must be a positive integer, got {value!r}")


def check_texts(text: str | list[str], limits: Limits) -> list[str]:
    """The texts of a request (one or a list) as a list, within ``limits``."""
    texts = [text] if isinstance(text, str) else list(text)
    if not texts:
        raise RequestError(422, 'no texts: give "text" as a string or a non-empty list')
    if len(texts) > limits.max_texts:
        raise RequestError(
            413, f"{len(texts)} texts in one request; the most is {limits.max_texts}"
        )
    for i, item in enumerate(texts):
        if len(item) > limits.max_chars:
            where = f"text {i}" if not isinstance(text, str) else "the text"
            raise RequestError(
                413, f"{where} has {len(item):,} characters; the most is {limits.max_chars:,}"
            )
    return texts


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before the app reads it.

    The body is read here whole (it is small: it fits the limit) and handed to the app again,
    always as JSON (whatever content type the client gave)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > self.max_bytes
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            more = message.get("more_body", False)
            if size > self.max_bytes:
                too_big = True
            if too_big:
                if size > _DRAIN_FACTOR * self.max_bytes:
                    break
                continue
            chunks.append(body)
        if too_big:
            await _send_error(send, 413, f"the request body is over {self.max_bytes:,} bytes")
            return
        whole = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(_as_json(scope), replay, send)


def _as_json(scope: dict) -> dict:
    """The scope with its body declared JSON: every endpoint takes JSON, and ``curl -d`` says
    form data unless told otherwise."""
    headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


async def _send_error(send: Any, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
