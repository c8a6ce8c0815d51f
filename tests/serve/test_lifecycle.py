"""A served model's life: reload after a re-export, restart after SIGKILL, clean shutdown, and the
errors for a model that does not load and a busy port. Each test runs its own real server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import export_tiny, free_ports, processes_mentioning, start_service

from visionrt.errors import ServerError
from visionrt.runtime.classifier import Classifier

pytestmark = pytest.mark.usefixtures("requires_triton")


def _remote_proba(service, images: list[Path]) -> np.ndarray:
    from visionrt.client import RemoteClassifier

    with RemoteClassifier(service.server.http_url) as clf:
        return clf.predict_proba(images)


def _local_proba(bundle: Path, images: list[Path]) -> np.ndarray:
    with Classifier.load(bundle) as clf:
        return clf.predict_proba(images)


def _assert_gone(service, workdir: Path) -> None:
    assert service.server.process is None
    assert processes_mentioning(str(workdir)) == []
    assert service.server.shm_prefix and not list(
        Path("/dev/shm").glob(f"{service.server.shm_prefix}*"))


def test_model_reloads_after_a_reexport(tmp_path, images):
    bundle = export_tiny(tmp_path / "bundle", seed=0)
    first = _local_proba(bundle, images)
    service = start_service(bundle, tmp_path / "work")
    try:
        assert np.abs(_remote_proba(service, images) - first).max() <= 1e-5
        assert service.poll() is None  # nothing changed yet
        export_tiny(bundle, seed=1, overwrite=True)  # as `visionrt export --overwrite` does
        second = _local_proba(bundle, images)
        assert np.abs(second - first).max() > 1e-2  # really another model
        assert "reloaded" in service.poll()
        assert np.abs(_remote_proba(service, images) - second).max() <= 1e-5
    finally:
        service.stop()
    _assert_gone(service, tmp_path / "work")


def test_server_killed_with_sigkill_restarts_and_serves(tmp_path, served_bundle, images):
    service = start_service(served_bundle, tmp_path / "work")
    try:
        expected = _remote_proba(service, images)
        killed = service.server.process
        stubs = [line for line in processes_mentioning(str(tmp_path / "work"))
                 if "triton_python_backend_stub" in line]
        assert stubs, "the model runs in a python backend stub process"
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(30)
        message = service.poll()
        assert "restarted" in message and "signal 9" in message
        assert service.server.process.pid != killed.pid
        assert np.abs(_remote_proba(service, images) - expected).max() <= 1e-5
        old_stub_pids = {line.split(":")[0] for line in stubs}
        alive = {line.split(":")[0] for line in processes_mentioning(str(tmp_path / "work"))}
        assert not old_stub_pids & alive, "the killed server's stubs were left running"
    finally:
        service.stop()
    _assert_gone(service, tmp_path / "work")


def test_model_that_fails_to_load_shows_tritons_error(tmp_path, served_bundle):
    bundle = Path(shutil.copytree(served_bundle, tmp_path / "tampered"))
    with open(bundle / "model.fp32.onnx", "ab") as model_file:
        model_file.write(b"appended")
    with pytest.raises(ServerError) as caught:
        start_service(bundle, tmp_path / "work")
    message = str(caught.value)
    assert "failed to load" in message and "ModelTamperedError" in message
    assert str(bundle / "model.fp32.onnx") in message  # the user's path, not the work copy
    assert "\n" not in message
    assert processes_mentioning(str(tmp_path / "work")) == []


def test_busy_port_is_named_with_its_flag(tmp_path, served_bundle):
    from visionrt.serve.server import ServerPorts
    from visionrt.serve.service import ServeConfig, Service

    http, grpc, metrics = free_ports()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", grpc))
        taken.listen()
        config = ServeConfig(served_bundle, ports=ServerPorts(http, grpc, metrics),
                             workdir=tmp_path / "work")
        with pytest.raises(ServerError, match=rf"port {grpc} \(--grpc-port\) is already in use"):
            Service(config).start()
    assert processes_mentioning(str(tmp_path / "work")) == []
