"""The gpu double's ``cuda.bindings.runtime``."""

from _gpu_double.cudart import *  # noqa: F401,F403
from _gpu_double.cudart import IS_GPU_DOUBLE  # noqa: F401
