"""Streams, events and CUDA graphs of the cuda.bindings.runtime double."""

from __future__ import annotations

import threading
import time
from typing import Any

from _gpu_double.cudart_types import (
    _capture_guard,
    _driver_error,
    _fail,
    _next_id,
    _ok,
    _stream,
    cudaError_t,
    cudaEvent_t,
    cudaGraph_t,
    cudaGraphExec_t,
    cudaStream_t,
    cudaStreamCaptureMode,
    cudaStreamDefault,
)
from _gpu_double.state import Capture, Stream, state


# -- streams and events ----------------------------------------------------------------------------
def cudaStreamCreateWithFlags(flags: int):
    err = _driver_error()
    if err:
        return _fail(err, 1)
    handle = _next_id()
    with state().lock:
        state().streams[handle] = Stream(handle, state().current_device, int(flags))
    state().count("streams_created")
    return _ok(cudaStream_t(handle))


def cudaStreamCreate():
    return cudaStreamCreateWithFlags(cudaStreamDefault)


def cudaStreamDestroy(stream: Any):
    target = _stream(stream)
    if target is None or target.handle == 0:
        return _fail(cudaError_t.cudaErrorInvalidResourceHandle)
    state().drain(target)  # queued work still completes
    target.destroyed = True
    state().count("streams_destroyed")
    return _ok()


def cudaStreamSynchronize(stream: Any):
    target = _stream(stream)
    if target is None:
        return _fail(cudaError_t.cudaErrorInvalidResourceHandle)
    if target.capture is not None or _capture_guard():
        if target.capture is not None:
            target.capture.invalid = "synchronize during capture"
        return _fail(cudaError_t.cudaErrorStreamCaptureUnsupported)
    state().drain(target)
    return _ok()


def cudaEventCreate():
    return _ok(cudaEvent_t(_next_id()))


def cudaEventCreateWithFlags(flags: int):
    return cudaEventCreate()


def cudaEventRecord(event: cudaEvent_t, stream: Any):
    target = _stream(stream)
    if target is None or not isinstance(event, cudaEvent_t):
        return _fail(cudaError_t.cudaErrorInvalidResourceHandle)
    event.time, event.stream = None, target

    def mark() -> None:
        event.time = time.perf_counter()

    with target.lock:
        idle = target.capture is None and not target.queue
    if idle:  # nothing ahead of it on the stream: the GPU reaches the event at once
        mark()
    else:
        state().enqueue(target, mark)
    return _ok()


def cudaEventSynchronize(event: cudaEvent_t):
    if event.stream is not None:
        state().drain(event.stream)
    return _ok()


def cudaEventElapsedTime(start: cudaEvent_t, end: cudaEvent_t):
    if start.time is None or end.time is None:
        return _fail(cudaError_t.cudaErrorNotReady, 1)
    return _ok((end.time - start.time) * 1000.0)


def cudaEventDestroy(event: cudaEvent_t):
    return _ok()


# -- graphs ----------------------------------------------------------------------------------------
def cudaStreamBeginCapture(stream: Any, mode: cudaStreamCaptureMode):
    target = _stream(stream)
    if target is None or target.handle == 0:  # the legacy stream cannot be captured
        return _fail(cudaError_t.cudaErrorInvalidResourceHandle if target is None
                     else cudaError_t.cudaErrorStreamCaptureUnsupported)
    with target.lock:
        if target.capture is not None:
            return _fail(cudaError_t.cudaErrorInvalidValue)
        state().drain(target)
        target.capture = Capture(int(mode), threading.get_ident())
    return _ok()


def cudaStreamEndCapture(stream: Any):
    target = _stream(stream)
    if target is None or target.capture is None:
        return _fail(cudaError_t.cudaErrorInvalidValue, 1)
    capture = target.capture
    if capture.mode == cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal and \
            capture.thread != threading.get_ident():
        return _fail(cudaError_t.cudaErrorStreamCaptureWrongThread, 1)
    target.capture = None
    if capture.invalid:
        return _fail(cudaError_t.cudaErrorStreamCaptureInvalidated, 1)
    return _ok(cudaGraph_t(capture.ops))


def cudaGraphInstantiate(graph: cudaGraph_t, flags: int = 0):
    if not isinstance(graph, cudaGraph_t) or graph.destroyed:
        return _fail(cudaError_t.cudaErrorInvalidValue, 1)
    state().count("graphs_instantiated")
    return _ok(cudaGraphExec_t(list(graph.ops)))


def cudaGraphLaunch(graph: cudaGraphExec_t, stream: Any):
    target = _stream(stream)
    if target is None or not isinstance(graph, cudaGraphExec_t):
        return _fail(cudaError_t.cudaErrorInvalidResourceHandle)
    if graph.destroyed:
        raise state().violate("cudaGraphLaunch of a destroyed graph")
    for op in graph.ops:
        state().enqueue(target, op)
    state().count("graph_launches")
    return _ok()


def cudaGraphDestroy(graph: cudaGraph_t):
    graph.destroyed = True
    return _ok()


def cudaGraphExecDestroy(graph: cudaGraphExec_t):
    graph.destroyed = True
    return _ok()
