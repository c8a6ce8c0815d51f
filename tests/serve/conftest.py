"""Serve fixtures: a real tritonserver (from the nvidia-pytriton wheel) on free ports.

Server tests (``requires_triton``) talk to the real server through the real tritonclient; they
skip, with the reason, only where the server cannot run: the ``serve`` extra is not installed,
the platform has no tritonserver wheel (not Linux x86_64), the Python version has no backend
stub, or numpy 2 is installed (the backend stub needs numpy 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import export_tiny, start_service, write_images

from visionrt.errors import VisionRTError


def _unavailable() -> str | None:
    try:
        from visionrt.serve.install import find_triton

        find_triton()
        import tritonclient.grpc.aio  # noqa: F401
        import tritonclient.http.aio  # noqa: F401
    except (VisionRTError, ImportError, RuntimeError) as exc:  # RuntimeError: tritonclient
        return str(exc)                                          # without its http/grpc extras
    return None


@pytest.fixture(scope="session")
def requires_triton() -> None:
    """Skip (with the reason) where no tritonserver can run; every server test uses it."""
    reason = _unavailable()
    if reason:
        pytest.skip(f"no runnable tritonserver: {reason}")


@pytest.fixture(scope="session")
def served_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny fp32 bundle from the real exporter (read-only: the shared server serves it)."""
    return export_tiny(tmp_path_factory.mktemp("serve") / "tiny", seed=0)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_images(tmp_path_factory.mktemp("serve-images"))


@pytest.fixture(scope="module")
def service(requires_triton: None, served_bundle: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One server per test module; a 5 ms queue delay makes batches form under test load."""
    running = start_service(served_bundle, tmp_path_factory.mktemp("work"),
                            max_queue_delay_us=5000)
    try:
        yield running
    finally:
        running.stop()
