"""Clients of a served visionrt model: ``RemoteClassifier(url).predict(files)``.

Needs the ``serve`` extra (tritonclient). See :mod:`visionrt.serve.client`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RemoteClassifier"]

if TYPE_CHECKING:  # pragma: no cover
    from visionrt.serve.client import RemoteClassifier


def __getattr__(name: str) -> Any:
    if name == "RemoteClassifier":
        from visionrt.serve.client import RemoteClassifier

        return RemoteClassifier
    raise AttributeError(f"module 'visionrt.client' has no attribute {name!r}")
