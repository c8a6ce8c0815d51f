"""MicroBatcher: coalesce concurrent single-image requests into backend batches.

    with MicroBatcher(clf, max_batch=32, max_wait_ms=5) as batcher:
        future = batcher.submit("cat.jpg", timeout=1.0)     # from any thread
        prediction = future.result()

Guarantees (reliability cases D1-D4, D10):

* the queue is bounded: ``submit`` raises QueueFullError at once when ``max_queue`` requests wait;
* a request whose timeout passes before its batch starts fails with RequestTimeoutError and is
  never run; ``max_wait_ms`` (how long a batch waits to fill) is a separate knob;
* each image is decoded and checked in the caller's thread before it joins a batch, so a bad item
  fails only its own future; an exception while running a batch goes to that batch's futures and
  the worker goes on; a dead worker is restarted on the next ``submit``;
* ``close(timeout)`` stops accepting requests, drains the queue for up to ``timeout`` seconds and
  fails whatever is left with RuntimeClosedError; no caller waits forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visionrt.errors import (
    ConfigError,
    InferenceError,
    QueueFullError,
    RequestTimeoutError,
    RuntimeClosedError,
    VisionRTError,
)
from visionrt.images import describe
from visionrt.runtime.classifier import Classifier, as_visionrt_error
from visionrt.runtime.prediction import to_prediction

log = logging.getLogger(__name__)


@dataclass
class _Request:
    name: str
    array: np.ndarray
    future: Future
    submitted: float
    deadline: float | None


@dataclass
class BatcherStats:
    """Counters for monitoring (read without locking; approximate while running)."""

    submitted: int = 0
    completed: int = 0
    rejected: int = 0
    timed_out: int = 0
    failed: int = 0
    batches: int = 0
    worker_restarts: int = 0
    batch_sizes: dict[int, int] = field(default_factory=dict)


class MicroBatcher:
    """Thread-safe request coalescing in front of one :class:`Classifier`."""

    def __init__(self, classifier: Classifier, max_batch: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 1024, top_k: int = 5) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0 or top_k < 1:
            raise ConfigError(
                f"MicroBatcher(max_batch={max_batch}, max_wait_ms={max_wait_ms}, "
                f"max_queue={max_queue}, top_k={top_k}): sizes must be >= 1, wait >= 0")
        self.classifier = classifier
        # Never build a batch above what the backend accepts (case D5).
        self.max_batch = min(max_batch, classifier.max_batch)
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.top_k = top_k
        self.stats = BatcherStats()
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._worker = self._start_worker()

    def _start_worker(self) -> threading.Thread:
        worker = threading.Thread(target=self._loop, name="visionrt-batcher", daemon=True)
        worker.start()
        return worker

    # -- callers -----------------------------------------------------------------------------
    def submit(self, image: Any, timeout: float | None = None) -> Future:
        """Queue one image (path, PIL image or uint8 HxWx3 array) for classification.

        Args:
            image: the input; decoded and resized in the calling thread.
            timeout: seconds from now after which the request is dropped unrun.

        Returns:
            A Future resolving to a Prediction, or raising the item's error (ImageError,
            InputValidationError, RequestTimeoutError, RuntimeClosedError, InferenceError).

        Raises:
            QueueFullError: ``max_queue`` requests are already waiting (back-pressure).
            RuntimeClosedError: the batcher is closed.
        """
        if timeout is not None and timeout <= 0:
            raise ConfigError(f"timeout = {timeout} must be > 0 seconds", actual=timeout)
        submitted = time.monotonic()
        self._admit()
        future: Future = Future()
        name = describe(image)
        try:
            array = self.classifier.preprocess(image)
        except Exception as exc:  # noqa: BLE001 - a bad item fails only its own future
            future.set_exception(as_visionrt_error(exc, name))
            return future
        request = _Request(name, array, future, submitted,
                           None if timeout is None else submitted + timeout)
        with self._cond:
            self._admit_locked()
            self._queue.append(request)
            self.stats.submitted += 1
            self._cond.notify()
        return future

    def _admit(self) -> None:
        with self._cond:
            self._admit_locked()

    def _admit_locked(self) -> None:
        if self._closed:
            raise RuntimeClosedError("the micro-batcher is closed and accepts no requests")
        if len(self._queue) >= self.max_queue:
            self.stats.rejected += 1
            raise QueueFullError(
                f"the micro-batcher queue is full ({self.max_queue} requests waiting)",
                expected=self.max_queue, actual=len(self._queue),
                hint="retry later, or raise max_queue / add replicas")
        if not self._worker.is_alive():  # watchdog: a dead worker must not strand requests
            self.stats.worker_restarts += 1
            log.error("micro-batcher worker died; restarting it")
            self._worker = self._start_worker()

    # -- worker ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            except BaseException as exc:  # noqa: BLE001 - never leave a future pending
                error = exc if isinstance(exc, VisionRTError) else InferenceError(
                    f"batch of {len(batch)} failed ({type(exc).__name__}: {exc})")
                _fail(batch, error)  # e.g. ResourceExhaustedError reaches the callers as it is
                self.stats.failed += len(batch)
                if not isinstance(exc, Exception):
                    raise

    def _next_batch(self) -> list[_Request] | None:
        """Wait for the first request, then up to max_wait for more; drop expired ones."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            batch = [self._queue.popleft()]
            fill_until = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                remaining = fill_until - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
        return self._live(batch)

    def _live(self, batch: list[_Request]) -> list[_Request]:
        now = time.monotonic()
        live = []
        for request in batch:
            if request.deadline is not None and now > request.deadline:
                waited = (now - request.submitted) * 1000.0
                _set_exception(request.future, RequestTimeoutError(
                    f"{request.name}: timed out after waiting {waited:.0f} ms in the queue "
                    "(not run)", source=request.name, actual=round(waited)))
                self.stats.timed_out += 1
            elif request.future.set_running_or_notify_cancel():
                live.append(request)
        return live

    def _run(self, batch: list[_Request]) -> None:
        if not batch:
            return
        probs = self.classifier(np.stack([r.array for r in batch]))
        for request, row in zip(batch, probs, strict=True):
            request.future.set_result(to_prediction(request.name, row,
                                                    self.classifier.labels, self.top_k))
        self.stats.batches += 1
        self.stats.completed += len(batch)
        self.stats.batch_sizes[len(batch)] = self.stats.batch_sizes.get(len(batch), 0) + 1

    # -- shutdown ----------------------------------------------------------------------------
    def close(self, timeout: float | None = None, cancel_pending: bool = False) -> None:
        """Stop accepting requests; drain (or cancel) the queue; fail leftovers.

        Args:
            timeout: seconds to wait for queued requests to finish (None: until done).
            cancel_pending: fail queued requests at once instead of draining them.
        """
        with self._cond:
            self._closed = True
            if cancel_pending:
                self._fail_queued()
            self._cond.notify_all()
        self._worker.join(timeout)
        with self._cond:
            self._fail_queued()

    def _fail_queued(self) -> None:
        while self._queue:
            request = self._queue.popleft()
            _set_exception(request.future, RuntimeClosedError(
                f"{request.name}: the micro-batcher closed before this request ran"))

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _set_exception(future: Future, error: BaseException) -> None:
    if future.set_running_or_notify_cancel():
        future.set_exception(error)


def _fail(batch: list[_Request], error: VisionRTError) -> None:
    for request in batch:
        if not request.future.done():
            request.future.set_exception(error)
