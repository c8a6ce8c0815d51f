"""The gpu double's ``cuda.bindings`` (tests/gpu_double); see _gpu_double for what it models."""

from _gpu_double.state import state as _state

__version__ = _state().config.bindings
from cuda.bindings import driver, runtime  # noqa: E402,F401 - as the real package exposes them

# get_cuda_native_handle first shipped in cuda-bindings 12.9.1: older versions lack utils' helper.
if tuple(int(p) for p in __version__.split(".")[:3]) >= (12, 9, 1):
    from cuda.bindings import utils  # noqa: E402,F401
