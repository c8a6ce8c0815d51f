"""A tritonserver process: start on a model repository, wait until ready, load, stop cleanly.

    with TritonServer(repo, workdir, ServerPorts(8000, 8001, 8002), models=["lite0"]) as server:
        server.wait_ready()
        ...                                   # clients talk to server.http_url / grpc_url

The server runs in its own session (process group) with its python-backend stubs; ``stop`` sends
SIGTERM (Triton finishes in-flight requests and unloads the models), then SIGKILL to whatever of
the group is left, and removes the stubs' shared-memory regions. On Linux the server also gets
SIGTERM if the process that started it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from visionrt.errors import ServerError
from visionrt.serve.install import TritonInstall, find_triton

log = logging.getLogger(__name__)

DEFAULT_READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
_SHM_DIR = Path("/dev/shm")
_PR_SET_PDEATHSIG = 1
# Triton's one-line report of a model that did not load, and of a port it could not bind.
_LOAD_FAILED = re.compile(r"failed to load '(?P<model>[^']+)' version \d+: (?P<message>.*?)\"?$")
_ERROR_LINE = re.compile(r"^(error: .*|E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] \"?(?P<message>.*?)\"?)$")


@dataclass(frozen=True)
class ServerPorts:
    """The three ports Triton listens on, with the flags that set them (for error messages)."""

    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    def flags(self) -> dict[str, int]:
        return {"--port": self.http, "--grpc-port": self.grpc, "--metrics-port": self.metrics}


def port_in_use(port: int, host: str = "0.0.0.0") -> bool:
    """True when ``port`` cannot be bound on ``host`` (another process listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Triton binds
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(ports: ServerPorts, host: str = "0.0.0.0") -> None:
    """Raise ServerError naming the first busy port and its flag."""
    values = list(ports.flags().values())
    if len(set(values)) != len(values):
        raise ServerError(f"--port, --grpc-port and --metrics-port must differ, got "
                          f"{', '.join(map(str, values))}")
    for flag, port in ports.flags().items():
        if not 0 < port < 65536:
            raise ServerError(f"{flag} {port} is not a TCP port (1..65535)", source=flag)
        if port_in_use(port, host):
            raise ServerError(f"port {port} ({flag}) is already in use by another process",
                              source=flag, hint=f"stop that process or pass another {flag}")


class TritonServer:
    """One tritonserver process on ``repository``, serving ``models`` (explicit model control)."""

    def __init__(self, repository: Path, workdir: Path, ports: ServerPorts, models: list[str], *,
                 host: str = "0.0.0.0", install: TritonInstall | None = None) -> None:
        self.repository = Path(repository)
        self.workdir = Path(workdir)
        self.ports = ports
        self.models = list(models)
        self.host = host
        self.install = install or find_triton()
        self.log_path = self.workdir / "tritonserver.log"
        self.process: subprocess.Popen | None = None
        self._starts = 0
        self._log_offset = 0
        self.shm_prefix = ""

    # -- addresses ---------------------------------------------------------------------------
    @property
    def local_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def http_url(self) -> str:
        return f"http://{self.local_host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.local_host}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.local_host}:{self.ports.metrics}/metrics"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Launch tritonserver (returns at once; see :meth:`wait_ready`).

        Raises:
            ServerError: a port is busy, or the binary cannot be executed.
        """
        if self.running:
            return
        check_ports(self.ports, self.host)
        self._starts += 1
        self.shm_prefix = f"visionrt_{os.getpid()}_{id(self):x}_{self._starts}_"
        backends = self._backend_directory()
        command = [str(self.install.binary), f"--model-repository={self.repository}",
                   f"--backend-directory={backends}", "--model-control-mode=explicit",
                   *[f"--load-model={name}" for name in self.models],
                   f"--http-port={self.ports.http}", f"--grpc-port={self.ports.grpc}",
                   f"--metrics-port={self.ports.metrics}", f"--http-address={self.host}",
                   f"--grpc-address={self.host}", f"--metrics-address={self.host}",
                   f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
                   "--exit-timeout-secs=10", "--log-verbose=0"]
        env = {**os.environ, "LD_LIBRARY_PATH": self.install.library_path()}
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self._log_offset = log_file.tell()  # this run's lines start here
            try:
                self.process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log_file,
                    stderr=subprocess.STDOUT, env=env, start_new_session=True,
                    preexec_fn=_die_with_parent)
            except OSError as exc:
                raise ServerError(f"cannot execute {self.install.binary}: {exc.strerror}",
                                  hint="reinstall: pip install --force-reinstall "
                                       "'visionrt[serve]'") from exc
        log.info("started tritonserver pid %d: %s", self.process.pid, " ".join(command))

    def wait_ready(self, timeout: float = DEFAULT_READY_TIMEOUT_S) -> None:
        """Block until the server and every model are ready.

        Raises:
            ServerError: the server exited (Triton's own error is quoted: a model that failed
                to load, a port it could not bind) or was not ready within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ServerError(self._exit_message())
            if self._ready():
                return
            time.sleep(0.2)
        message = self.triton_error() or "no error in its log"
        self.stop()
        raise ServerError(f"tritonserver was not ready after {timeout:g} s ({message})",
                          hint=f"see {self.log_path}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; leaves no process of its group and no shared
        memory behind. Returns the server's exit code (None if it was never started)."""
        process, self.process = self.process, None
        if process is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("tritonserver did not stop within %g s; killing it", timeout)
        _kill_group(process)
        self._remove_shared_memory()
        return process.returncode

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- model control -----------------------------------------------------------------------
    def load_model(self, name: str) -> None:
        """(Re)load ``name`` from the repository; Triton keeps the loaded version serving when
        the new one fails.

        Raises:
            ServerError: with Triton's message when the model does not load.
        """
        url = f"{self.http_url}/v2/repository/models/{name}/load"
        request = urllib.request.Request(url, data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=DEFAULT_READY_TIMEOUT_S):
                return
        except urllib.error.HTTPError as exc:
            detail = _first_line(_json_error(exc.read()))
            raise ServerError(f"Triton could not load model '{name}': {detail}") from None
        except OSError as exc:
            raise ServerError(f"Triton at {self.http_url} did not answer: {exc}") from None

    # -- log ---------------------------------------------------------------------------------
    def triton_error(self) -> str | None:
        """Triton's most telling error line from this run's log, or None."""
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(self._log_offset)
                lines = log_file.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            match = _LOAD_FAILED.search(line)
            if match:
                return f"model '{match['model']}' failed to load: {_first_line(match['message'])}"
        for line in reversed(lines):
            match = _ERROR_LINE.match(line.strip())
            if match and "NVML" not in line and "CudaDriver" not in line and "DCGM" not in line:
                return match["message"] or line.strip()
        return None

    def _exit_message(self) -> str:
        code = self.process.returncode if self.process else None
        cause = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        detail = self.triton_error() or f"see {self.log_path}"
        return f"tritonserver stopped ({cause}): {detail}"

    # -- helpers -----------------------------------------------------------------------------
    def _ready(self) -> bool:
        urls = [f"{self.http_url}/v2/health/ready",
                *[f"{self.http_url}/v2/models/{name}/ready" for name in self.models]]
        try:
            for url in urls:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status != 200:
                        return False
        except OSError:
            return False
        return True

    def _backend_directory(self) -> Path:
        """``backends/python`` with the backend library, its utils and this Python's stub."""
        python = self.workdir / "backends" / "python"
        python.mkdir(parents=True, exist_ok=True)
        sources = [self.install.python_backend / "libtriton_python.so",
                   self.install.python_backend / "triton_python_backend_utils.py",
                   self.install.stub]
        for source in sources:
            link = python / source.name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(source)
        return python.parent

    def _remove_shared_memory(self) -> None:
        if self.shm_prefix and _SHM_DIR.is_dir():
            for region in _SHM_DIR.glob(f"{self.shm_prefix}*"):
                with contextlib.suppress(OSError):
                    region.unlink()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux prctl)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL every process left in the server's session (stubs, the server itself)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def _first_line(message: str) -> str:
    """Triton's message without the Python traceback it appends (escaped newlines)."""
    return re.split(r"\\n|\n", message, maxsplit=1)[0].strip()


def _json_error(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace").strip() or "no detail"
