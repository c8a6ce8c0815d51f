"""The gpu double's ``cuda.bindings.driver``."""

from _gpu_double.driver import *  # noqa: F401,F403
