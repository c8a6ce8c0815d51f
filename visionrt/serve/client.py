"""RemoteClassifier: classify images on a Triton server that runs a visionrt model.

    with RemoteClassifier("http://localhost:8000") as clf:        # or grpc://localhost:8001
        for p in clf.predict(["cat.jpg", "photos/"], top_k=3):
            print(p.input, p.label, p.score) if p.ok else print(p.input, p.error)

Files are sent as they are (one request each, ``concurrency`` in flight) and decoded on the
server; PIL images and arrays are sent as uint8 pixels. Results are the runtime's own
``Prediction`` / ``PredictionError``, in input order; a file the server cannot decode fails
alone. Requests go through tritonclient's asyncio clients on a private event loop thread, so
``predict`` also works where an event loop is already running (Jupyter).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

import numpy as np

from visionrt import _optional
from visionrt.errors import ConfigError, ServerError, VisionRTError
from visionrt.images import describe, load_image, read_image_bytes
from visionrt.runtime._inputs import Item, expand_inputs
from visionrt.runtime.prediction import Prediction, PredictionError, to_prediction
from visionrt.serve import protocol
from visionrt.spec import ModelSpec

DEFAULT_URL = "http://localhost:8000"
DEFAULT_CONCURRENCY = 16


class RemoteClassifier:
    """A visionrt model served by Triton, with ``Classifier``'s ``predict`` interface.

    Args:
        url: ``http://host:port`` (default port 8000), ``https://...`` or ``grpc://host:port``
            (default port 8001).
        model: the model's name on the server; default: the one visionrt model it serves.
        concurrency: requests in flight at once.
        timeout: seconds a request may take.

    Raises:
        MissingDependencyError: tritonclient is not installed.
        ServerError: the server does not answer, or serves no such visionrt model.
    """

    def __init__(self, url: str = DEFAULT_URL, model: str | None = None, *,
                 concurrency: int = DEFAULT_CONCURRENCY, timeout: float = 60.0) -> None:
        if concurrency < 1:
            raise ConfigError(f"concurrency = {concurrency} must be >= 1", actual=concurrency)
        _optional.require("tritonclient", extra="serve")
        self.endpoint = protocol.parse_url(url)
        self.url = self.endpoint.url
        self.concurrency = concurrency
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="visionrt-remote")
        self._thread.start()
        self._closed = False
        try:
            self._client = self._call(self._connect())
            self.model, self.spec, self.parameters = self._call(find_model(self._client, model))
        except BaseException:
            self.close()
            raise

    # -- Classifier's interface --------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def info(self) -> dict[str, Any]:
        """Where the model runs and what it was configured with."""
        return {"backend": "triton", "server": self.url, "model": self.model,
                "device": self.url, "precision": self.parameters.get("visionrt_precision", "?"),
                "runtime_backend": self.parameters.get("visionrt_backend", "?"),
                "arch": self.spec.arch, "num_classes": self.spec.num_classes}

    def predict(self, inputs: Any, top_k: int = 5, batch_size: int | None = None,
                errors: str = "report") -> list[Prediction | PredictionError]:
        """Classify paths, folders, globs, PIL images or uint8 arrays on the server, in input
        order (``batch_size`` is accepted for ``Classifier`` compatibility: the server batches).

        Returns:
            One Prediction or PredictionError per expanded input.
        """
        if top_k < 1:
            raise ConfigError(f"top_k = {top_k} must be >= 1", actual=top_k)
        results: list[Prediction | PredictionError] = []
        for item, value in zip(*self._probabilities(inputs, errors), strict=True):
            if isinstance(value, VisionRTError):
                results.append(PredictionError(item.name, str(value), type(value).__name__))
            else:
                results.append(to_prediction(item.name, value, self.labels, top_k))
        return results

    def predict_proba(self, inputs: Any, batch_size: int | None = None,
                      errors: str = "raise") -> np.ndarray:
        """Probabilities (N, classes); with ``errors="report"`` a failed input's row is NaN."""
        rows = [np.full(self.spec.num_classes, np.nan, np.float32)
                if isinstance(value, VisionRTError) else value
                for value in self._probabilities(inputs, errors)[1]]
        return np.stack(rows) if rows else np.zeros((0, self.spec.num_classes), np.float32)

    def statistics(self) -> dict[str, Any]:
        """Triton's statistics of the model (``/v2/models/<model>/stats``), as JSON."""
        return self._call(self._client.statistics(self.model))

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection and stop the event loop thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        client = getattr(self, "_client", None)
        if client is not None:
            self._call(client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> RemoteClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteClassifier({self.model} at {self.url}, {len(self.labels)} classes)"

    # -- internals ---------------------------------------------------------------------------
    def _call(self, coroutine: Coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _connect(self) -> protocol.Client:
        client = protocol.Client(self.endpoint, self.concurrency, self.timeout)
        if not await client.live():
            await client.close()
            raise ServerError(f"no Triton server answers at {self.url}",
                              hint="start one with: visionrt serve BUNDLE")
        return client

    def _probabilities(self, inputs: Any, errors: str
                       ) -> tuple[list[Item], list[np.ndarray | VisionRTError]]:
        if errors not in ("report", "raise"):
            raise ConfigError(f"errors = {errors!r}; expected 'report' or 'raise'")
        items = expand_inputs(inputs)
        values = self._call(self._run_all(items))
        if errors == "raise":
            for value in values:
                if isinstance(value, VisionRTError):
                    raise value
        return items, values

    async def _run_all(self, items: list[Item]) -> list[np.ndarray | VisionRTError]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(item: Item) -> np.ndarray | VisionRTError:
            async with gate:
                return await self._run_one(item)

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def _run_one(self, item: Item) -> np.ndarray | VisionRTError:
        if item.error is not None:
            return item.error
        try:
            if isinstance(item.source, (str, bytes)) or hasattr(item.source, "__fspath__"):
                data = read_image_bytes(item.source)  # the runtime's checks and error texts
                placeholder = describe(data)
                rows = await self._client.infer_files(self.model, [data])
            else:
                pixels = load_image(item.source)
                placeholder = describe(pixels)
                rows = await self._client.infer_pixels(self.model, pixels[None])
        except VisionRTError as exc:
            return exc
        except protocol.RequestError as exc:
            return exc.as_error(item.name, placeholder)
        return rows[0]


async def find_model(client: protocol.Client,
                     name: str | None) -> tuple[str, ModelSpec, dict[str, str]]:
    """``(name, spec, parameters)`` of the visionrt model ``name``, or of the only one served.

    Raises:
        ServerError: no such visionrt model, or several and no name.
    """
    names = [name] if name else await client.ready_models()
    found = []
    for candidate in names:
        parameters = await client.parameters(candidate)
        if "visionrt_spec" in parameters:
            found.append((candidate, ModelSpec.from_json(parameters["visionrt_spec"]),
                          parameters))
    if len(found) == 1:
        return found[0]
    url = client.endpoint.url
    if name:
        raise ServerError(f"model {name!r} at {url} is not a visionrt model",
                          hint="serve it with: visionrt serve BUNDLE")
    what = ", ".join(n for n, _, _ in found) or "none"
    raise ServerError(f"{url} serves {len(found)} visionrt models ({what})",
                      hint="name one with model=... (--model-name)")
