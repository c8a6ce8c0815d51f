"""Timing loops for benchmarks: fixed-duration measurement after an excluded warm-up.

The method follows trtexec / MLPerf practice: warm up for a fixed time (never counted), then call the
step back to back for a fixed duration, recording every call's latency; throughput is the number of
images completed divided by the wall time of the measured window. On a GPU each call is timed with
CUDA events recorded on the legacy default stream, which orders after all work of blocking streams,
so the interval covers the copies and kernels the call enqueued.

Standard library only; CUDA events go through the runtime's CUDA layer when asked for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from visionrt.bench.stats import LatencySummary, summarize

log = logging.getLogger(__name__)

Step = Callable[[], Any]

# A row is comparable (speed-ups are computed from it) when its window holds at least MIN_SAMPLES
# calls (requests in the server mode) and lasts MIN_SECONDS: with fewer calls one slow call (a
# cache still warming, a busy neighbour on a shared CPU) sets the whole row's throughput, and a
# short window catches a transient state. Rows short of either are flagged, never passed off.
MIN_SAMPLES = 10
MIN_SECONDS = 2.0
# To reach MIN_SAMPLES a window grows past its duration, up to MAX_EXTENSION times it (and at
# least EXTENSION_FLOOR_S seconds more); a row that is still short is flagged, never passed off.
MAX_EXTENSION = 4.0
EXTENSION_FLOOR_S = 10.0


@dataclass(frozen=True)
class Measurement:
    """What one timed configuration produced."""

    throughput: float  # images per second over the measured window
    latency: LatencySummary  # per call (engine / end-to-end) or per request (server)
    images: int  # images completed inside the window
    wall_s: float  # length of the measured window
    errors: int = 0  # requests that raised (server mode)
    below_minimum: str | None = None  # why the window is too thin to compare (fewer samples)


class WallTimer:
    """Host wall-clock timer (``time.perf_counter``)."""

    def time(self, step: Step) -> float:
        start = time.perf_counter()
        step()
        return time.perf_counter() - start


class CudaEventTimer:
    """Times a call with two CUDA events on the legacy default stream (the runtime's CUDA layer)."""

    def __init__(self) -> None:
        from visionrt.runtime import _cuda

        self._cuda = _cuda.get_api()
        self._start = self._cuda.create_event()
        self._stop = self._cuda.create_event()

    def time(self, step: Step) -> float:
        self._cuda.record_event(self._start, 0)
        step()
        self._cuda.record_event(self._stop, 0)
        return self._cuda.elapsed_ms(self._start, self._stop) / 1000.0

    def close(self) -> None:
        for event in (self._start, self._stop):
            self._cuda.destroy_event(event)


def measure_steps(
    step: Step, *, images_per_step: int, duration_s: float, warmup_s: float,
    timer: WallTimer | CudaEventTimer | None = None, min_samples: int = MIN_SAMPLES,
    max_window_s: float | None = None, min_seconds: float | None = None,
) -> Measurement:
    """Call ``step`` back to back for ``duration_s`` after ``warmup_s`` of excluded warm-up.

    Args:
        step: runs one batch (engine mode) or one batch of files (end-to-end mode).
        images_per_step: images one call completes.
        duration_s: length of the measured window (the last call may end after it).
        warmup_s: warm-up time; at least one call is always made and discarded.
        timer: per-call timer; wall clock when omitted.
        min_samples: the window grows past ``duration_s`` until it holds this many calls ...
        max_window_s: ... but not beyond this (default: :data:`MAX_EXTENSION` times
            ``duration_s``, at least :data:`EXTENSION_FLOOR_S` more); a window still short of
            ``min_samples`` says so in ``below_minimum``.
        min_seconds: a window shorter than this (default :data:`MIN_SECONDS`) is flagged in
            ``below_minimum`` too; it is not lengthened past the ``duration_s`` asked for.

    Returns:
        The Measurement of the window.
    """
    timer = timer or WallTimer()
    if max_window_s is None:
        max_window_s = max(duration_s * MAX_EXTENSION, duration_s + EXTENSION_FLOOR_S)
    _run_for(step, warmup_s)
    latencies: list[float] = []
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        enough = len(latencies) >= min_samples or elapsed >= max_window_s
        if latencies and elapsed >= duration_s and enough:
            break
        latencies.append(timer.time(step))
    wall = time.perf_counter() - start
    images = images_per_step * len(latencies)
    return Measurement(throughput=images / wall, latency=summarize(latencies), images=images,
                       wall_s=wall, below_minimum=_shortfall(len(latencies), wall, min_samples,
                                                             min_seconds))


def _shortfall(samples: int, wall: float, min_samples: int = MIN_SAMPLES,
               min_seconds: float | None = None) -> str | None:
    """Why a window is too thin to compare, or None when it holds enough samples and seconds."""
    min_seconds = MIN_SECONDS if min_seconds is None else min_seconds
    if samples >= min_samples and wall >= min_seconds:
        return None
    return f"{samples} samples in {wall:.1f} s (a row needs {min_samples} and {min_seconds:g} s)"


def _run_for(step: Step, seconds: float) -> None:
    step()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        step()


def measure_clients(
    submit: Callable[[Any], Future], items: Sequence[Any], *, clients: int, duration_s: float,
    warmup_s: float, timeout_s: float = 60.0,
) -> Measurement:
    """Server scenario: ``clients`` threads each submit one item at a time and wait for it.

    Args:
        submit: enqueues one item and returns a Future (``MicroBatcher.submit``).
        items: inputs the clients cycle through (client ``i`` starts at item ``i``).
        clients: number of concurrent client threads.
        duration_s, warmup_s: measured window and excluded warm-up (both run with all clients).
        timeout_s: a request not answered within this time counts as an error.

    Returns:
        Throughput over the window and the per-request latency percentiles (completed requests
        whose submission started inside the window).
    """
    state = _ClientState()
    threads = [threading.Thread(target=_client, args=(submit, items, i, clients, state, timeout_s),
                                name=f"bench-client-{i}", daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(warmup_s)
    with state.lock:
        state.recording = True
        state.window_start = time.perf_counter()
    time.sleep(duration_s)
    with state.lock:
        state.recording = False
        wall = time.perf_counter() - state.window_start
        state.stop = True
    for thread in threads:
        thread.join(timeout_s + 5.0)
    if not state.latencies:
        raise _no_requests(clients, duration_s, state.errors)
    samples = len(state.latencies)
    return Measurement(throughput=samples / wall, latency=summarize(state.latencies),
                       images=samples, wall_s=wall, errors=state.errors,
                       below_minimum=_shortfall(samples, wall))


class _ClientState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.recording = False
        self.stop = False
        self.window_start = 0.0
        self.latencies: list[float] = []
        self.errors = 0


def _client(submit: Callable[[Any], Future], items: Sequence[Any], index: int, stride: int,
            state: _ClientState, timeout_s: float) -> None:
    position = index
    while not state.stop:
        item = items[position % len(items)]
        position += stride
        start = time.perf_counter()
        try:
            submit(item).result(timeout=timeout_s)
            failed = False
        except Exception as exc:  # noqa: BLE001 - a failed request is counted, not fatal
            log.debug("bench request failed: %s", exc)
            failed = True
        finished = time.perf_counter()
        with state.lock:
            # Only requests that started and finished inside the window are counted.
            if state.recording and start >= state.window_start:
                if failed:
                    state.errors += 1
                else:
                    state.latencies.append(finished - start)


def _no_requests(clients: int, duration_s: float, errors: int) -> Exception:
    from visionrt.errors import InferenceError

    return InferenceError(
        f"no request completed in the {duration_s:g} s window with {clients} clients "
        f"({errors} failed)", hint="check the model with `visionrt predict`, or raise --duration")
