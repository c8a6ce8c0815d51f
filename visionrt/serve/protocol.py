"""One small async interface over tritonclient's HTTP and gRPC asyncio clients.

Both speak KServe v2; they differ in how they take options and return JSON (gRPC answers
protobuf messages, and int64 fields become strings in their JSON form). Everything above this
module uses :class:`Client` and never imports tritonclient itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from visionrt import _optional, errors
from visionrt.errors import ConfigError, MissingDependencyError, ServerError, VisionRTError

INPUT_FILE = "image_file"
INPUT_PIXELS = "pixels"
OUTPUT = "probabilities"
DEFAULT_PORTS = {"http": 8000, "https": 8000, "grpc": 8001}
_KIND = re.compile(r"^(?P<kind>[A-Z]\w*Error): (?P<message>.*)$", re.DOTALL)


@dataclass(frozen=True)
class Endpoint:
    """A parsed server address: ``protocol`` is ``http`` or ``grpc``."""

    protocol: str
    host: str
    port: int
    ssl: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        scheme = "grpc" if self.protocol == "grpc" else ("https" if self.ssl else "http")
        return f"{scheme}://{self.address}"


def parse_url(url: str, protocol: str | None = None) -> Endpoint:
    """``http://host:port``, ``https://...``, ``grpc://host:port`` or ``host:port`` (HTTP, or
    ``protocol``) -> Endpoint.

    Raises:
        ConfigError: another scheme, or no host.
    """
    text = url.strip()
    if "://" not in text:
        text = f"{protocol or 'http'}://{text}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if protocol is not None and protocol not in ("http", "grpc"):
        raise ConfigError(f"--protocol {protocol} is not supported; use http or grpc")
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(f"--server {url} is not a server address; use http://HOST:PORT or "
                          "grpc://HOST:PORT", source="--server", actual=url)
    if protocol == "grpc" and scheme != "grpc" and parts.port is None:
        scheme = "grpc"
    kind = "grpc" if scheme == "grpc" or protocol == "grpc" else "http"
    try:
        port = parts.port or DEFAULT_PORTS[kind]
    except ValueError as exc:
        raise ConfigError(f"--server {url}: {exc}", source="--server") from exc
    return Endpoint(kind, parts.hostname, port, ssl=scheme == "https")


class RequestError(Exception):
    """A request the server answered with an error (``transport`` False) or never answered."""

    def __init__(self, message: str, *, transport: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transport = transport

    def as_error(self, name: str, placeholder: str = "") -> VisionRTError:
        """The visionrt error for input ``name``: the server's error class and message, with
        the server's name for the image (``<N bytes>``) replaced by ``name``."""
        if self.transport:
            return ServerError(f"{name}: the server did not answer ({self.message})",
                               source=name)
        match = _KIND.match(self.message)
        kind, text = (match["kind"], match["message"]) if match else ("ServerError",
                                                                     self.message)
        if placeholder and placeholder in text:
            text = text.replace(placeholder, name, 1)
        elif not text.startswith(name):
            text = f"{name}: {text}"
        cls = getattr(errors, kind, None)
        if not (isinstance(cls, type) and issubclass(cls, VisionRTError)):
            cls = ServerError
        return cls(text, source=name)


class Client:
    """tritonclient's asyncio client of ``endpoint``'s protocol; create it inside the loop."""

    def __init__(self, endpoint: Endpoint, concurrency: int, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        if endpoint.protocol == "grpc":
            self._types = _require("tritonclient.grpc")
            aio = _require("tritonclient.grpc.aio")
            self._client = aio.InferenceServerClient(endpoint.address, ssl=endpoint.ssl)
        else:
            self._types = _require("tritonclient.http")
            aio = _require("tritonclient.http.aio")
            # Room beyond the requests in flight for statistics and metadata calls: a busy
            # pool of exactly `concurrency` connections starves them.
            self._client = aio.InferenceServerClient(endpoint.address,
                                                     conn_limit=concurrency + 4,
                                                     conn_timeout=timeout, ssl=endpoint.ssl)
        self._grpc = endpoint.protocol == "grpc"

    async def close(self) -> None:
        await self._client.close()

    async def live(self) -> bool:
        try:
            return bool(await self._client.is_server_live())
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            return False

    async def ready_models(self) -> list[str]:
        index = await self._json(self._client.get_model_repository_index)
        models = index.get("models", []) if isinstance(index, dict) else index
        return sorted({m["name"] for m in models if m.get("state") == "READY"})

    async def parameters(self, model: str) -> dict[str, str]:
        config = await self._json(self._client.get_model_config, model)
        config = config.get("config", config)
        return {key: value.get("string_value", value.get("stringValue", ""))
                for key, value in config.get("parameters", {}).items()}

    async def statistics(self, model: str) -> dict[str, Any]:
        """``/v2/models/<model>/stats`` as the HTTP JSON (gRPC's int64 strings -> int)."""
        return _ints(await self._json(self._client.get_inference_statistics, model))

    async def infer_files(self, model: str, files: list[bytes]) -> np.ndarray:
        data = np.empty((len(files), 1), dtype=np.object_)
        data[:, 0] = files
        return await self._infer(model, INPUT_FILE, "BYTES", data)

    async def infer_pixels(self, model: str, pixels: np.ndarray) -> np.ndarray:
        return await self._infer(model, INPUT_PIXELS, "UINT8", np.ascontiguousarray(pixels))

    async def _infer(self, model: str, name: str, datatype: str, data: np.ndarray) -> np.ndarray:
        tensor = self._types.InferInput(name, list(data.shape), datatype)
        tensor.set_data_from_numpy(data)
        output = self._types.InferRequestedOutput(OUTPUT)
        timing = {"client_timeout": self.timeout} if self._grpc else {}
        try:
            result = await self._client.infer(model, [tensor], outputs=[output], **timing)
        except self._exception() as exc:
            # tritonclient reports a refused connection as an exception too: its status says so
            status = str(exc.status() or "")
            raise RequestError(exc.message() or str(exc),
                               transport="UNAVAILABLE" in status or "DEADLINE" in status) from None
        except Exception as exc:  # noqa: BLE001 - aiohttp / OS errors: no answer
            raise RequestError(f"{type(exc).__name__}: {exc}", transport=True) from None
        return result.as_numpy(OUTPUT)

    async def _json(self, method: Any, *args: Any) -> Any:
        try:
            if self._grpc:
                return await method(*args, as_json=True)
            return await method(*args)
        except self._exception() as exc:
            raise ServerError(f"{self.endpoint.url}: {exc.message() or exc}") from None

    def _exception(self) -> type[Exception]:
        from tritonclient.utils import InferenceServerException

        return InferenceServerException


def _require(module: str) -> Any:
    """Import a tritonclient module; tritonclient installed without its http/grpc extras
    raises RuntimeError, not ImportError."""
    try:
        return _optional.require(module, extra="serve")
    except RuntimeError as exc:
        raise MissingDependencyError(f"{module} cannot be used ({exc})", source=module,
                                     hint="install it with: pip install 'visionrt[serve]'"
                                     ) from None


def _ints(value: Any) -> Any:
    """gRPC's JSON writes int64 as strings; turn digit strings back into ints."""
    if isinstance(value, dict):
        return {key: _ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_ints(item) for item in value]
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value
