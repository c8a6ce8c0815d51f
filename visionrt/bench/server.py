"""`visionrt bench --server`: load on a running Triton server serving a visionrt model.

For each concurrency C, C clients each send one encoded image per request and wait for the
answer, back to back, for a fixed window after a warm-up (the method of ``timing``). The clients
are coroutines on one asyncio event loop (tritonclient's aio clients), so the load generator
costs little CPU on the machine it measures. Each row has the client's view (requests/s,
images/s, latency percentiles of requests that started and ended in the window, errors) and
Triton's own (``/v2/models/M/stats`` read before and after the window): time in the queue, time
computing, batches executed, and so the average batch Triton formed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from visionrt.bench.environment import environment
from visionrt.bench.inputs import synthetic_jpegs
from visionrt.bench.results import BenchReport
from visionrt.bench.stats import LatencySummary, summarize
from visionrt.errors import InferenceError, check_value
from visionrt.images import list_images, read_image_bytes

MAX_FILES = 256  # files held in memory and cycled through
SYNTHETIC_FILES = 32


@dataclass(frozen=True)
class ServerBenchConfig:
    """Options of :func:`run_server_bench`, validated once.

    Attributes:
        server: ``http://HOST:PORT`` or ``grpc://HOST:PORT``.
        protocol: ``http`` or ``grpc`` (None: from the URL).
        model: the model's name (None: the one visionrt model the server serves).
        concurrency: client counts, one row each.
        images: a folder of images to send (None: synthetic 500x375 JPEGs).
        duration, warmup: measured window and excluded warm-up per row, seconds.
        timeout: seconds a request may take before it counts as an error.
    """

    server: str
    protocol: str | None = None
    model: str | None = None
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    images: Path | None = None
    duration: float = 10.0
    warmup: float = 2.0
    timeout: float = 60.0

    def __post_init__(self) -> None:
        check_value(self.protocol in (None, "http", "grpc"), "--protocol", self.protocol,
                    "http or grpc")
        check_value(bool(self.concurrency) and all(1 <= c <= 1024 for c in self.concurrency),
                    "--concurrency", self.concurrency, "a list of client counts in 1..1024")
        check_value(self.duration > 0, "--duration", self.duration, "> 0 seconds")
        check_value(self.warmup >= 0, "--warmup", self.warmup, ">= 0 seconds")


@dataclass(frozen=True)
class TritonWindow:
    """Triton's statistics of the model over one measured window."""

    requests: int  # inference requests Triton completed
    batches: int  # model executions (batches formed by the dynamic batcher)
    queue_ms: float  # mean time a request waited in Triton's queue
    compute_ms: float  # mean time of the model's execution, per request (input+infer+output)

    @property
    def average_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "average_batch": round(self.average_batch, 2)}


@dataclass(frozen=True)
class ServerBenchRow:
    protocol: str
    concurrency: int
    requests: int
    errors: int
    wall_s: float
    latency: LatencySummary
    triton: TritonWindow
    images_per_request: int = 1

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall_s

    @property
    def images_per_s(self) -> float:
        return self.requests_per_s * self.images_per_request

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "concurrency": self.concurrency,
                "requests": self.requests, "errors": self.errors,
                "requests_per_s": round(self.requests_per_s, 2),
                "images_per_s": round(self.images_per_s, 2), "wall_s": round(self.wall_s, 3),
                "latency_ms": self.latency.to_dict(), "triton": self.triton.to_dict()}


@dataclass
class ServerBenchReport(BenchReport):
    """Environment, configuration, rows (one per concurrency) and notes of a server run."""

    results: list[ServerBenchRow] = field(default_factory=list)


def run_server_bench(config: ServerBenchConfig,
                     progress: Callable[[str], None] | None = None) -> ServerBenchReport:
    """Measure every concurrency of ``config`` against the running server.

    Raises:
        ServerError: the server does not answer or serves no visionrt model.
        InferenceError: no request succeeded in a window.
    """
    return asyncio.run(_run(config, progress or (lambda message: None)))


async def _run(config: ServerBenchConfig, progress: Callable[[str], None]) -> ServerBenchReport:
    from visionrt.serve.client import find_model
    from visionrt.serve.protocol import Client, parse_url

    endpoint = parse_url(config.server, config.protocol)
    files, source = _files(config.images)
    client = Client(endpoint, max(config.concurrency), config.timeout)
    try:
        model, spec, parameters = await find_model(client, config.model)
        report = ServerBenchReport(environment(), {
            "server": endpoint.url, "model": model, "arch": spec.arch,
            "runtime_backend": parameters.get("visionrt_backend"),
            "runtime_precision": parameters.get("visionrt_precision"),
            "concurrency": list(config.concurrency), "duration_s": config.duration,
            "warmup_s": config.warmup, "images": source})
        for clients in config.concurrency:
            progress(f"{endpoint.url}: {clients} client(s) ...")
            report.results.append(await _measure(client, model, files, clients, config,
                                              endpoint.protocol))
    finally:
        await client.close()
    report.notes.append(f"{source}; one image per request; each row {config.duration:g} s "
                        f"after {config.warmup:g} s of warm-up")
    return report


def _files(folder: Path | None) -> tuple[list[bytes], str]:
    if folder is None:
        files = synthetic_jpegs(SYNTHETIC_FILES)
        return files, f"{len(files)} synthetic 500x375 JPEGs"
    paths = list_images(folder)[:MAX_FILES]
    if not paths:
        raise InferenceError(f"--images {folder}: no image files", source=str(folder))
    return [read_image_bytes(p) for p in paths], f"{len(paths)} files from {folder}"


class _Window:
    def __init__(self) -> None:
        self.recording = False
        self.stop = False
        self.start = 0.0
        self.latencies: list[float] = []
        self.errors = 0


async def _measure(client: Any, model: str, files: list[bytes], clients: int,
                   config: ServerBenchConfig, protocol: str) -> ServerBenchRow:
    window = _Window()
    tasks = [asyncio.create_task(_client(client, model, files, index, clients, window))
             for index in range(clients)]
    await asyncio.sleep(config.warmup)
    before = await client.statistics(model)
    window.recording, window.start = True, time.perf_counter()
    await asyncio.sleep(config.duration)
    window.recording, window.stop = False, True
    wall = time.perf_counter() - window.start
    after = await client.statistics(model)
    await asyncio.gather(*tasks)
    if not window.latencies:
        raise InferenceError(f"no request both started and succeeded in the "
                             f"{config.duration:g} s window with {clients} clients "
                             f"({window.errors} failed)", hint="raise --duration, or check the "
                             "server with `visionrt predict --server URL FILE`")
    return ServerBenchRow(protocol, clients, len(window.latencies), window.errors, wall,
                          summarize(window.latencies), triton_window(before, after))


async def _client(client: Any, model: str, files: list[bytes], index: int, stride: int,
                  window: _Window) -> None:
    from visionrt.serve.protocol import RequestError

    position = index
    while not window.stop:
        data = files[position % len(files)]
        position += stride
        start = time.perf_counter()
        try:
            await client.infer_files(model, [data])
            failed = False
        except RequestError:
            failed = True
        # Only requests that started and finished inside the window count.
        if window.recording and start >= window.start:
            if failed:
                window.errors += 1
            else:
                window.latencies.append(time.perf_counter() - start)


def triton_window(before: dict[str, Any], after: dict[str, Any]) -> TritonWindow:
    """Triton's statistics between two ``/v2/models/M/stats`` answers."""
    first, last = before["model_stats"][0], after["model_stats"][0]

    def delta(*keys: str) -> int:
        value_after, value_before = last, first
        for key in keys:
            value_after, value_before = value_after.get(key, {}), value_before.get(key, {})
        return int(value_after or 0) - int(value_before or 0)

    stats = "inference_stats"
    requests = delta(stats, "success", "count")
    compute_ns = sum(delta(stats, part, "ns") for part in
                     ("compute_input", "compute_infer", "compute_output"))
    return TritonWindow(
        requests=requests, batches=delta("execution_count"),
        queue_ms=delta(stats, "queue", "ns") / 1e6 / max(requests, 1),
        compute_ms=compute_ns / 1e6 / max(requests, 1))


def render_server_table(report: ServerBenchReport) -> Any:
    """A rich table of the rows."""
    from rich.table import Table

    config = report.config
    table = Table(title=f"{config['arch']} · Triton model {config['model']} at "
                        f"{config['server']} ({config['runtime_backend']} "
                        f"{config['runtime_precision']})", title_justify="left")
    columns = ("protocol", "clients", "req/s", "img/s", "p50 ms", "p90 ms", "p99 ms", "errors",
               "Triton queue ms", "Triton compute ms", "batches", "avg batch")
    for name in columns:
        table.add_column(name, justify="left" if name == "protocol" else "right")
    for row in report.results:
        latency = row.latency
        table.add_row(row.protocol, str(row.concurrency), f"{row.requests_per_s:.1f}",
                      f"{row.images_per_s:.1f}", f"{latency.p50:.2f}",
                      f"{latency.p90:.2f}", f"{latency.p99:.2f}", str(row.errors),
                      f"{row.triton.queue_ms:.2f}", f"{row.triton.compute_ms:.2f}",
                      str(row.triton.batches), f"{row.triton.average_batch:.2f}")
    return table
