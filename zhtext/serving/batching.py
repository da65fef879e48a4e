"""Dynamic batching: one worker thread per model gathers concurrent requests into one batch.

Requests wait in the model's queue; the worker takes the oldest, then every waiting request that
asks for the same thing (same endpoint, same options), until ``max_batch`` texts are gathered or
``max_wait_ms`` has passed since the oldest arrived. It runs the model once on all their texts
and hands each request its own slice of the results. The worker waits for company only while
requests are coming together (its last batch was shared): a lone client is never kept waiting,
and under load the requests that arrive during a batch form the next one. The model runs on the
worker thread, never on the event loop, so ``/health`` answers while a long batch runs.

Every request is settled exactly once: with its records, or with the error of its batch. A
request whose client went away before its batch started is dropped unrun; a stream whose client
disconnects stops at its next piece, freeing the worker.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from zhtext.errors import ZhtextError

__all__ = ["Batcher", "Busy", "Stopping"]

# What a worker runs: (texts, options) -> one result per text, and one request's results ->
# its records (JSON texts), rendered on the worker too so the event loop only sends bytes.
Run = Callable[[list[str], Any], list[Any]]
Render = Callable[[list[str], list[Any], Any], list[str]]


class Busy(ZhtextError):
    """The model's queue is full: the client should try again later (HTTP 429)."""


class Stopping(ZhtextError):
    """The server is shutting down and takes no new work (HTTP 503)."""


@dataclass(eq=False)
class _Job:
    key: Hashable
    texts: list[str]
    options: Any
    run: Run
    render: Render
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future | None = None  # a request's answer
    stream: Callable[[list[str], Any], Iterator[Any]] | None = None
    sink: asyncio.Queue | None = None  # a stream's items
    cancelled: threading.Event = field(default_factory=threading.Event)
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class Stats:
    """What a model's worker has done, for ``/models`` (and the tests of batching)."""

    received: int = 0  # requests queued
    requests: int = 0  # requests settled (answered or failed)
    texts: int = 0  # texts run
    batches: int = 0  # model calls
    shared: int = 0  # requests that shared their batch with others
    largest: int = 0  # most requests in one batch
    streams: int = 0
    dropped: int = 0  # requests and streams whose client went away
    errors: int = 0  # requests answered with an error
    busy_s: float = 0.0  # seconds spent running batches and streams

    def as_dict(self) -> dict[str, int | float]:
        return {**vars(self), "busy_s": round(self.busy_s, 3)}


class Batcher:
    """The queue and worker thread of one model. ``max_batch``: most texts in one gathered
    batch (a single larger request still runs, alone); ``max_wait_ms``: how long the oldest
    request may wait for company (only while the last batch was shared); ``max_queue``: requests
    waiting before new ones get :class:`Busy`. ``max_batch=1`` turns batching off (each request
    runs alone)."""

    def __init__(
        self, name: str, max_batch: int = 64, max_wait_ms: float = 5.0, max_queue: int = 1024
    ) -> None:
        if max_batch < 1 or max_queue < 1 or not max_wait_ms >= 0:
            raise ZhtextError("max_batch and max_queue must be >= 1 and max_wait_ms >= 0")
        self.name = name
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self.stats = Stats()
        self.running = 0  # requests in the batch being run
        self._company = False  # whether the last batch was shared: then the next waits for more
        self._pending: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._work, name=f"zhtext-serve-{name}", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Requests waiting for their batch."""
        return len(self._pending)

    @property
    def busy(self) -> bool:
        return self.running > 0

    # ---------------------------------------------------------------- the event loop's side

    def _enqueue(self, job: _Job) -> None:
        with self._cond:
            if self._closing:
                raise Stopping("the server is stopping")
            if len(self._pending) >= self.max_queue:
                raise Busy(
                    f"the {self.name} model has {len(self._pending)} requests waiting; "
                    "try again later"
                )
            self._pending.append(job)
            self.stats.received += 1
            self._cond.notify()

    async def submit(
        self, key: Hashable, texts: list[str], options: Any, run: Run, render: Render
    ) -> list[str]:
        """The records of ``texts``, run in a batch with other requests of the same ``key``."""
        loop = asyncio.get_running_loop()
        job = _Job(key, texts, options, run, render, loop, loop.create_future())
        self._enqueue(job)
        try:
            return await job.future
        finally:
            job.cancelled.set()  # a client gone before its batch ran: the worker drops it

    def open_stream(
        self, texts: list[str], options: Any, pieces: Callable[[list[str], Any], Iterator[Any]]
    ) -> AsyncIterator[Any]:
        """Queue ``pieces(texts, options)`` (:class:`Busy` or :class:`Stopping` at once) and give
        its items as the worker makes them. Streams are not batched; closing the iterator (a
        client that disconnects) stops the worker's at its next item."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        job = _Job(
            ("stream",), texts, options, _no_run, _no_render, loop, stream=pieces, sink=queue
        )
        self._enqueue(job)
        return self._items(job, queue)

    @staticmethod
    async def _items(job: _Job, queue: asyncio.Queue) -> AsyncIterator[Any]:
        try:
            while True:
                kind, item = await queue.get()
                if kind == "item":
                    yield item
                elif kind == "error":
                    raise item
                else:
                    return
        finally:
            job.cancelled.set()

    def close(self, timeout: float | None = None) -> None:
        """Take no new requests, finish the waiting ones, and stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    # ---------------------------------------------------------------- the worker's side

    def _gather(self) -> list[_Job] | None:
        """The next batch: the oldest live job and the waiting jobs of its key (None: closed)."""
        with self._cond:
            while True:
                while self._pending and self._pending[0].cancelled.is_set():
                    self._drop(self._pending.popleft())
                if self._pending:
                    break
                if self._closing:
                    return None
                self._cond.wait()
            first = self._pending.popleft()
            batch, size = [first], len(first.texts)
            self.running = 1
            if first.stream is not None:
                return batch
            deadline = first.arrived + (self.max_wait if self._company else 0.0)
            while size < self.max_batch:
                for job in list(self._pending):
                    if (
                        job.key == first.key
                        and not job.cancelled.is_set()
                        and size + len(job.texts) <= self.max_batch
                    ):
                        self._pending.remove(job)
                        batch.append(job)
                        self.running += 1
                        size += len(job.texts)
                left = deadline - time.monotonic()
                if size >= self.max_batch or left <= 0 or self._closing:
                    break
                self._cond.wait(left)
            self._company = len(batch) > 1
            return batch

    def _drop(self, job: _Job) -> None:
        # (its future was cancelled with the request's task: there is no one to answer)
        self.stats.dropped += 1

    def _work(self) -> None:
        while (batch := self._gather()) is not None:
            begin = time.perf_counter()
            try:
                if batch[0].stream is not None:
                    self._run_stream(batch[0])
                else:
                    self._run_batch(batch)
            finally:
                self.running = 0
                self.stats.busy_s += time.perf_counter() - begin

    def _run_batch(self, batch: list[_Job]) -> None:
        texts = [t for job in batch for t in job.texts]
        first = batch[0]
        try:
            results = first.run(texts, first.options)
            if len(results) != len(texts):
                raise RuntimeError(f"{len(results)} results for {len(texts)} texts")
            answers: list[tuple[Any, BaseException | None]] = []
            start = 0
            for job in batch:
                mine = results[start : start + len(job.texts)]
                start += len(job.texts)
                answers.append((job.render(job.texts, mine, job.options), None))
        except Exception as exc:  # noqa: BLE001  (the batch's error is each request's answer)
            answers = [(None, exc)] * len(batch)
            self.stats.errors += len(batch)
        s = self.stats
        s.batches += 1
        s.texts += len(texts)
        s.requests += len(batch)
        s.largest = max(s.largest, len(batch))
        s.shared += len(batch) if len(batch) > 1 else 0
        for job, (records, error) in zip(batch, answers):
            job.loop.call_soon_threadsafe(_settle, job.future, records, error)

    def _run_stream(self, job: _Job) -> None:
        assert job.stream is not None and job.sink is not None
        put = job.sink.put_nowait
        self.stats.streams += 1
        pieces = job.stream(job.texts, job.options)
        try:
            for piece in pieces:
                if job.cancelled.is_set():
                    self.stats.dropped += 1
                    return
                job.loop.call_soon_threadsafe(put, ("item", piece))
            job.loop.call_soon_threadsafe(put, ("end", None))
        except Exception as exc:  # noqa: BLE001  (ends the stream with its error)
            self.stats.errors += 1
            job.loop.call_soon_threadsafe(put, ("error", exc))
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled: its client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _no_run(texts: list[str], options: Any) -> list[Any]:
    raise AssertionError("a stream job is not run as a batch")


def _no_render(texts: list[str], results: list[Any], options: Any) -> list[str]:
    raise AssertionError("a stream job is not rendered")
