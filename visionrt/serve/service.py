"""Serve a bundle on a real Triton Inference Server, and keep it served.

    with Service(ServeConfig(Path("bundles/lite0"))) as service:   # repository, server, ready
        print(service.server.http_url)
        service.run(stop_event, report=print)                    # until stop_event is set

``Service`` writes the ``visionrt``-kind repository entry into a work directory, starts
tritonserver on it, restarts the server when it dies (at most ``max_restarts`` times a minute),
and reloads the model when the bundle is exported again (its manifest changes).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionrt.bundle import load_bundle
from visionrt.errors import ServerError, VisionRTError, check_value
from visionrt.exporter.triton_python import (
    PythonModelOptions,
    write_python_model,
)
from visionrt.serve.server import DEFAULT_READY_TIMEOUT_S, ServerPorts, TritonServer
from visionrt.serve.triton_model import INFO_MARKER

log = logging.getLogger(__name__)

RESTART_WINDOW_S = 60.0


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``visionrt serve`` needs; validated once here.

    Attributes:
        bundle: the bundle directory to serve.
        ports: HTTP, gRPC and metrics ports.
        host: the address Triton binds (``0.0.0.0``: every interface, Triton's default).
        model: backend, precision, instances, queue delay of the visionrt model.
        name: the model's name in Triton (default: the bundle directory's name).
        workdir: where the repository and the server log go (default: a temporary directory,
            removed on stop).
        ready_timeout: seconds the server may take to become ready.
        reload: reload the model when the bundle's manifest changes.
        max_restarts: restarts of a dead server allowed within a minute.
    """

    bundle: Path
    ports: ServerPorts = ServerPorts()
    host: str = "0.0.0.0"
    model: PythonModelOptions = field(default_factory=PythonModelOptions)
    name: str = ""
    workdir: Path | None = None
    ready_timeout: float = DEFAULT_READY_TIMEOUT_S
    reload: bool = True
    max_restarts: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "bundle", Path(self.bundle))
        if not self.name:
            object.__setattr__(self, "name", model_name(self.bundle))
        check_value(re.fullmatch(r"[A-Za-z0-9_-]+", self.name) is not None, "--name", self.name,
                    "letters, digits, '-' and '_'")
        check_value(self.ready_timeout > 0, "ready_timeout", self.ready_timeout, "> 0 seconds")
        check_value(self.max_restarts >= 0, "max_restarts", self.max_restarts, ">= 0")


def model_name(bundle: Path) -> str:
    """A Triton model name from a bundle directory's name."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", Path(bundle).resolve().name) or "model"


class Service:
    """A bundle served by tritonserver; see the module docstring."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self._own_workdir = config.workdir is None
        self.workdir = Path(config.workdir or tempfile.mkdtemp(prefix="visionrt-serve-"))
        self.repository = self.workdir / "repository"
        self.server: TritonServer | None = None
        self._fingerprint: tuple[int, int] | None = None
        self._restarts: list[float] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Write the repository, start tritonserver and wait until the model is ready.

        Raises:
            BundleError, ConfigError: the bundle cannot be served.
            MissingDependencyError: the ``serve`` extra is not installed.
            ServerError: a busy port, or Triton's own error when the model does not load.
        """
        try:
            self.write_repository()
            self.server = TritonServer(self.repository, self.workdir, self.config.ports,
                                       [self.config.name], host=self.config.host)
            self.server.start()
            self.server.wait_ready(self.config.ready_timeout)
        except ServerError as exc:
            self.stop()
            raise ServerError(self._user_paths(str(exc))) from None
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (no process left behind) and remove a temporary work directory."""
        if self.server is not None:
            self.server.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- supervision -------------------------------------------------------------------------
    def run(self, stop: threading.Event, report: Callable[[str], None] = log.info,
            interval: float = 1.0) -> None:
        """Supervise until ``stop`` is set: restart a dead server, reload a re-exported bundle.

        Raises:
            ServerError: the server died more than ``max_restarts`` times within a minute, or
                did not come back.
        """
        while not stop.wait(interval):
            message = self.poll()
            if message:
                report(message)

    def poll(self) -> str | None:
        """One supervision step; returns what happened, if anything."""
        assert self.server is not None, "start() first"
        if not self.server.running:
            return self._restart()
        if self.config.reload and self._bundle_changed():
            return self._reload()
        return None

    def _restart(self) -> str:
        server = self.server
        code = server.process.returncode if server.process is not None else None
        cause = server.triton_error() or (f"signal {-code}" if code and code < 0
                                          else f"exit code {code}")
        server.stop()  # what is left of its group and shared memory
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(self._restarts) > self.config.max_restarts:
            raise ServerError(f"tritonserver died {len(self._restarts)} times within "
                              f"{RESTART_WINDOW_S:g} s (last: {cause}); giving up",
                              hint=f"see {server.log_path}")
        log.warning("tritonserver stopped (%s); restarting", cause)
        server.start()
        server.wait_ready(self.config.ready_timeout)
        return f"tritonserver stopped ({cause}); restarted and ready"

    def _reload(self) -> str:
        try:
            self.write_repository()
            self.server.load_model(self.config.name)
        except VisionRTError as exc:
            return (f"bundle changed but the new model was not loaded "
                    f"({self._user_paths(str(exc))}); still serving the previous one")
        return f"bundle changed: model {self.config.name} reloaded"

    # -- repository --------------------------------------------------------------------------
    def write_repository(self) -> Path:
        """(Re)write the model's repository entry from the bundle; returns its directory."""
        bundle = load_bundle(self.config.bundle)
        self._fingerprint = self._manifest_fingerprint()
        max_batch = min(a.max_batch for a in bundle.artifacts)
        model = write_python_model(self.repository, self.config.name, bundle.path, bundle.spec,
                                   max_batch, self._model_options(), overwrite=True)
        return model.directory

    def _user_paths(self, message: str) -> str:
        """Triton names files in the work directory's copy of the bundle: name the bundle."""
        copy = self.repository / self.config.name / "1" / "bundle"
        return message.replace(str(copy), str(self.config.bundle))

    def _model_options(self) -> PythonModelOptions:
        from dataclasses import replace

        # The server's stubs run visionrt in this interpreter's environment: an activate script
        # that puts it first on PATH works for venvs, conda and plain installs alike.
        return replace(self.config.model, env_path=write_activate(self.workdir / "env"))

    def _manifest_fingerprint(self) -> tuple[int, int] | None:
        try:
            stat = (self.config.bundle / "manifest.json").stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def _bundle_changed(self) -> bool:
        current = self._manifest_fingerprint()
        return current is not None and current != self._fingerprint

    # -- reporting ---------------------------------------------------------------------------
    def model_info(self) -> dict[str, Any] | None:
        """What the model's first instance reported it runs (backend, precision, device)."""
        if self.server is None or not self.server.log_path.is_file():
            return None
        info = None
        for line in self.server.log_path.read_text(errors="replace").splitlines():
            if line.startswith(INFO_MARKER + " "):
                info = json.loads(line[len(INFO_MARKER) + 1:])
        return info

    def triton_version(self) -> str:
        try:
            with urllib.request.urlopen(f"{self.server.http_url}/v2", timeout=5) as response:
                return json.loads(response.read())["version"]
        except (OSError, ValueError, KeyError):
            return "unknown"


def write_activate(env: Path) -> Path:
    """An environment directory whose ``bin/activate`` (sourced by Triton's python backend before
    it starts a stub) puts this interpreter's ``bin`` first on PATH."""
    import shlex
    import sys

    (env / "bin").mkdir(parents=True, exist_ok=True)
    interpreter_bin = Path(sys.executable).parent
    (env / "bin" / "activate").write_text(
        "# written by visionrt serve: run the python backend stub in visionrt's environment\n"
        f"export PATH={shlex.quote(str(interpreter_bin))}:\"$PATH\"\n", encoding="utf-8")
    return env
