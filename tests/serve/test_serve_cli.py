"""`visionrt serve` as a user runs it: a subprocess that prints its URLs, answers, and stops on
Ctrl-C (SIGINT) or SIGTERM leaving nothing behind; and its one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from serve_helpers import READY_TIMEOUT_S, free_ports, processes_mentioning
from typer.testing import CliRunner

from visionrt.cli import app

CLI = [sys.executable, "-c", "from visionrt.cli import main; main()"]


def _serve(bundle: Path, workdir: Path, *extra: str) -> tuple[subprocess.Popen, list[str], list[int]]:
    ports = free_ports()
    command = [*CLI, "serve", str(bundle), "--port", str(ports[0]), "--grpc-port",
               str(ports[1]), "--metrics-port", str(ports[2]), "--host", "127.0.0.1",
               "--workdir", str(workdir), *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    return process, lines, ports


def _wait_for(lines: list[str], text: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        if any(text in line for line in lines):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never printed:\n{''.join(lines)}")


@pytest.mark.usefixtures("requires_triton")
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_answers_then_stops_cleanly(tmp_path, served_bundle, images, stop_signal):
    from visionrt.client import RemoteClassifier

    workdir = tmp_path / "work"
    process, lines, (http, grpc, metrics) = _serve(served_bundle, workdir, "--instances", "2")
    try:
        _wait_for(lines, "stops the server", process)
        text = "".join(lines)
        for url in (f"http://127.0.0.1:{http}/v2/models/tiny", f"grpc://127.0.0.1:{grpc}",
                    f"http://127.0.0.1:{metrics}/metrics"):
            assert url in text
        assert "2 instance(s)" in text
        stubs = " ".join(p for p in processes_mentioning(str(workdir)) if "backend_stub" in p)
        assert "tiny_0_0" in stubs and "tiny_0_1" in stubs  # one process per instance
        with RemoteClassifier(f"http://127.0.0.1:{http}") as clf:
            assert all(p.ok for p in clf.predict(images[:4]))
        process.send_signal(stop_signal)
        assert process.wait(120) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
    assert "tritonserver stopped" in "".join(lines)
    assert processes_mentioning(str(workdir)) == []
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(
        f"visionrt_{process.pid}_")]


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_serve_extra_is_a_one_line_error(tmp_path, served_bundle):
    # sys.modules[name] = None: the environment has no nvidia-pytriton
    code = ("import sys; sys.modules['pytriton'] = None\n"
            "from visionrt.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code, "serve", str(served_bundle)],
                            capture_output=True, text=True, timeout=120)
    _one_line_error(result, "nvidia-pytriton", "pip install 'visionrt[serve]'")


@pytest.mark.usefixtures("requires_triton")
def test_busy_port_is_a_one_line_error(tmp_path, served_bundle):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = free_ports(2)
        result = subprocess.run(
            [*CLI, "serve", str(served_bundle), "--port", str(port), "--grpc-port",
             str(others[0]), "--metrics-port", str(others[1]), "--host", "127.0.0.1"],
            capture_output=True, text=True, timeout=120)
    _one_line_error(result, f"port {port} (--port) is already in use", "pass another --port")


def test_predict_server_rejects_local_options():
    result = CliRunner().invoke(app, ["predict", "--server", "http://localhost:1", "a.jpg",
                                      "--precision", "int8"])
    assert result.exit_code == 2 and "--precision applies to local models" in result.output


def test_predict_needs_a_model_or_a_server():
    result = CliRunner().invoke(app, ["predict"])
    assert result.exit_code == 2 and "--server" in result.output


def test_predict_server_not_answering_is_a_one_line_error(tmp_path):
    try:
        import tritonclient.http.aio  # noqa: F401
    except (ImportError, RuntimeError) as exc:  # tritonclient without its http extra
        pytest.skip(f"tritonclient's HTTP client is not installed: {exc}")
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    (port,) = free_ports(1)
    result = subprocess.run([*CLI, "predict", "--server", f"http://127.0.0.1:{port}",
                             str(image)], capture_output=True, text=True, timeout=120)
    _one_line_error(result, f"no Triton server answers at http://127.0.0.1:{port}",
                    "visionrt serve BUNDLE")
