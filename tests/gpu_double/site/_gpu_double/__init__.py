"""A TensorRT 10/11 + cuda-python test double for visionrt's tests; never part of the package.

Layout (tests/gpu_double/):

    site/tensorrt/          the ``tensorrt`` module (Builder, OnnxParser, Runtime, engines, contexts)
    site/_gpu_double/       this implementation
    cuda_site/cuda/bindings ``cuda.bindings.runtime`` / ``driver`` / ``utils`` backed by host memory

With both folders first on ``sys.path`` (``PYTHONPATH``, or ``gpu_double.activated()`` in-process)
visionrt sees one GPU with TensorRT. With only ``site/`` it sees the double TensorRT on the real
CUDA stack (a GPU machine without TensorRT): engines then enqueue a real kernel on the caller's
stream (:mod:`_gpu_double.kernels`).

Configuration: ``$VISIONRT_GPU_DOUBLE`` (JSON, read at import) or :func:`configure`:

    devices      [{"name": ..., "cc": [major, minor], "memory": bytes}, ...]
    driver       "ok" | "no-device" | "no-driver" | "old-driver" | "broken"
    trt_version  e.g. "10.13.0.35" or "11.4.0.106" (decides which API names exist)
    bindings     cuda-bindings version reported by ``cuda.bindings.__version__``

Contracts the real libraries enforce by crashing or by returning False are enforced here the same
way where Python allows (False, None, an error code), and by :class:`ContractViolation` where the
real library would crash the process (a Runtime/Builder without a GPU, a context shared by two
threads, an address outside any allocation). Every violation is also kept in ``state().violations``.
"""

from _gpu_double.state import (  # noqa: F401 - the public surface of the double
    ContractViolation,
    Device,
    State,
    configure,
    state,
)
