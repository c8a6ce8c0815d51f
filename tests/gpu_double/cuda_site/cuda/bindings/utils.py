"""The gpu double's ``cuda.bindings.utils`` (absent before cuda-bindings 12.9.1)."""

from _gpu_double.state import state as _state

if tuple(int(p) for p in _state().config.bindings.split(".")[:3]) < (12, 9, 1):
    raise ImportError("cuda.bindings.utils.get_cuda_native_handle needs cuda-bindings >= 12.9.1 "
                      f"(gpu double set to {_state().config.bindings})")
from _gpu_double.utils import get_cuda_native_handle  # noqa: E402,F401
