"""Clients of a served visionrt model: ``RemoteClassifier(url).predict(files)``.

Needs the ``serve`` extra (tritonclient). See :mod:`visionrt.serve.client`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from visionrt._lazy import lazy_getattr

__all__ = ["RemoteClassifier"]

if TYPE_CHECKING:  # pragma: no cover
    from visionrt.serve.client import RemoteClassifier

__getattr__ = lazy_getattr(__name__, {"RemoteClassifier": "visionrt.serve.client"})
