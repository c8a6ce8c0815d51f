"""Serve bundles on a real Triton Inference Server, and talk to it.

    service.py       ServeConfig, Service: repository in a work dir, tritonserver, restarts, reloads
    server.py        TritonServer: one tritonserver process (ports, readiness, clean stop)
    install.py       find the tritonserver of the nvidia-pytriton wheel (the ``serve`` extra)
    triton_model.py  the python-backend model that runs visionrt's runtime inside Triton
    client.py        RemoteClassifier: predict through tritonclient (HTTP or gRPC)

Importing this package is cheap; each module imports what it needs.
"""

from __future__ import annotations

from visionrt._lazy import lazy_getattr

_LAZY = {
    "ServeConfig": "visionrt.serve.service",
    "Service": "visionrt.serve.service",
    "ServerPorts": "visionrt.serve.server",
    "TritonServer": "visionrt.serve.server",
    "RemoteClassifier": "visionrt.serve.client",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
