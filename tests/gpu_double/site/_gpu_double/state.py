"""Process-wide state of the double: configuration, devices, device memory, streams, violations."""

from __future__ import annotations

import bisect
import ctypes
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ENV = "VISIONRT_GPU_DOUBLE"
DRIVER_STATES = ("ok", "no-device", "no-driver", "old-driver", "broken")
# Fake device addresses live above the 47-bit user address space: a host pointer passed where a
# device pointer belongs can never be found in the device map by accident.
DEVICE_BASE = 1 << 52
ALIGNMENT = 256  # cudaMalloc's guarantee
GARBAGE = 0xCD  # fresh allocations are not zeroed on a GPU either


class ContractViolation(BaseException):  # not Exception: no `except Exception` may hide it
    """What the real library would answer with a crash or undefined behaviour."""


@dataclass(frozen=True)
class Device:
    name: str = "NVIDIA Double L4"
    cc: tuple[int, int] = (8, 9)
    memory: int = 24 << 30


@dataclass
class Allocation:
    ptr: int
    nbytes: int
    array: np.ndarray
    device: int
    pinned: bool  # page-locked host memory (cudaMallocHost) rather than device memory
    freed: bool = False


@dataclass
class Capture:
    mode: int
    thread: int
    ops: list[Callable[[], None]] = field(default_factory=list)
    invalid: str | None = None


@dataclass
class Stream:
    handle: int
    device: int
    flags: int
    queue: list[Callable[[], None]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    capture: Capture | None = None
    destroyed: bool = False


@dataclass
class Config:
    devices: tuple[Device, ...] = (Device(),)
    driver: str = "ok"
    trt_version: str = "10.13.0.35"
    bindings: str = "13.5.0"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        unknown = set(data) - {"devices", "driver", "trt_version", "bindings"}
        if unknown:
            raise ValueError(f"unknown gpu double settings {sorted(unknown)}")
        devices = tuple(Device(d.get("name", Device.name), tuple(d.get("cc", Device.cc)),
                               int(d.get("memory", Device.memory)))
                        for d in data.get("devices", [{}]))
        config = cls(devices, data.get("driver", "ok"), data.get("trt_version", "10.13.0.35"),
                     data.get("bindings", "13.5.0"))
        if config.driver not in DRIVER_STATES:
            raise ValueError(f"driver {config.driver!r} not in {DRIVER_STATES}")
        return config


class State:
    """Everything a process-wide GPU would hold."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.allocations: dict[int, Allocation] = {}
        self._device_bases: list[int] = []
        self._next = DEVICE_BASE
        self.streams: dict[int, Stream] = {}
        self.violations: list[str] = []
        self.trt_log: list[tuple[int, str]] = []  # (severity, message) of every TensorRT log line
        self.counters: dict[str, int] = {}
        self._local = threading.local()

    # -- bookkeeping -----------------------------------------------------------------------------
    def count(self, name: str, delta: int = 1) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + delta

    def violate(self, message: str) -> ContractViolation:
        with self.lock:
            self.violations.append(message)
        return ContractViolation(message)

    @property
    def usable_devices(self) -> tuple[Device, ...]:
        return self.config.devices if self.config.driver == "ok" else ()

    @property
    def current_device(self) -> int:
        return getattr(self._local, "device", 0)

    @current_device.setter
    def current_device(self, index: int) -> None:
        self._local.device = index

    def device_bytes_in_use(self, device: int | None = None) -> int:
        with self.lock:
            return sum(a.nbytes for a in self.allocations.values()
                       if not a.pinned and not a.freed and device in (None, a.device))

    # -- memory ------------------------------------------------------------------------------------
    def allocate_device(self, nbytes: int) -> Allocation | None:
        """None when the device is out of memory."""
        device = self.current_device
        with self.lock:
            if self.device_bytes_in_use(device) + nbytes > self.config.devices[device].memory:
                return None
            ptr = self._next
            self._next += max(ALIGNMENT, -(-nbytes // ALIGNMENT) * ALIGNMENT)
            allocation = Allocation(ptr, nbytes, np.full(nbytes, GARBAGE, np.uint8), device,
                                    pinned=False)
            self.allocations[ptr] = allocation
            bisect.insort(self._device_bases, ptr)
            return allocation

    def allocate_pinned(self, nbytes: int) -> Allocation:
        # Real host memory: visionrt views it through ctypes at the returned address.
        array = np.full(max(nbytes, 1), GARBAGE, np.uint8)
        allocation = Allocation(array.ctypes.data, nbytes, array, self.current_device, pinned=True)
        with self.lock:
            self.allocations[allocation.ptr] = allocation
        return allocation

    def free(self, ptr: int, pinned: bool) -> bool:
        with self.lock:
            allocation = self.allocations.get(ptr)
            if allocation is None or allocation.freed or allocation.pinned != pinned:
                return False
            allocation.freed = True  # kept, so a late access is a named violation, not a crash
            return True

    def device_view(self, ptr: int, nbytes: int, what: str) -> np.ndarray:
        """The bytes [ptr, ptr + nbytes) of one live device allocation, or a violation."""
        with self.lock:
            index = bisect.bisect_right(self._device_bases, ptr) - 1
            allocation = self.allocations.get(self._device_bases[index]) if index >= 0 else None
        if allocation is None or allocation.pinned or ptr + nbytes > allocation.ptr + \
                allocation.nbytes or ptr < allocation.ptr:
            raise self.violate(f"{what}: {nbytes} bytes at {ptr:#x} are not inside one device "
                               "allocation (illegal memory access)")
        if allocation.freed:
            raise self.violate(f"{what}: device memory at {ptr:#x} was freed (use after free)")
        offset = ptr - allocation.ptr
        return allocation.array[offset:offset + nbytes]

    def pinned_allocation(self, ptr: int, nbytes: int) -> Allocation | None:
        """The live pinned allocation holding [ptr, ptr + nbytes), if any (else pageable)."""
        with self.lock:
            for allocation in self.allocations.values():
                if allocation.pinned and allocation.ptr <= ptr and \
                        ptr + nbytes <= allocation.ptr + allocation.nbytes:
                    if allocation.freed:
                        raise self.violate(f"pinned host memory at {ptr:#x} was freed")
                    return allocation
        return None

    # -- streams -----------------------------------------------------------------------------------
    def stream(self, handle: int) -> Stream | None:
        with self.lock:
            stream = self.streams.get(handle)
        return None if stream is None or stream.destroyed else stream

    def enqueue(self, stream: Stream, op: Callable[[], None]) -> None:
        """Run ``op`` when the stream reaches it (or record it while the stream is captured)."""
        with stream.lock:
            if stream.capture is not None:
                stream.capture.ops.append(op)
            else:
                stream.queue.append(op)

    def drain(self, stream: Stream) -> None:
        """Execute everything queued on ``stream`` (what a synchronize waits for)."""
        with stream.lock:
            ops, stream.queue = stream.queue, []
            for op in ops:
                op()

    def drain_all(self) -> None:
        with self.lock:
            streams = list(self.streams.values())
        for stream in streams:
            self.drain(stream)

    def capturing_streams(self) -> list[Stream]:
        with self.lock:
            return [s for s in self.streams.values() if s.capture is not None]


def host_read(ptr: int, nbytes: int) -> bytes:
    return ctypes.string_at(ptr, nbytes)


def host_write(ptr: int, data: np.ndarray) -> None:
    ctypes.memmove(ptr, np.ascontiguousarray(data).ctypes.data, data.nbytes)


_state: State | None = None
_state_lock = threading.Lock()


def state() -> State:
    """The double's state, created from ``$VISIONRT_GPU_DOUBLE`` on first use."""
    global _state
    with _state_lock:
        if _state is None:
            _state = State(Config.from_dict(json.loads(os.environ.get(ENV) or "{}")))
        return _state


def configure(**settings: Any) -> State:
    """A fresh state with ``settings`` (see the package docstring); forgets all memory."""
    global _state
    current = state().config
    merged = {"devices": [{"name": d.name, "cc": list(d.cc), "memory": d.memory}
                          for d in current.devices], "driver": current.driver,
              "trt_version": current.trt_version, "bindings": current.bindings, **settings}
    with _state_lock:
        _state = State(Config.from_dict(merged))
    return _state
