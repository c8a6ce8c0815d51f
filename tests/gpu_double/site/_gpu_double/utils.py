"""``cuda.bindings.utils``: the native handle of a cuda-bindings object (since 12.9.1)."""

from __future__ import annotations

from typing import Any


def get_cuda_native_handle(obj: Any) -> int:
    return int(obj.getPtr())
