"""`visionrt serve`: a bundle on a real Triton Inference Server, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import typer

from visionrt.cli._console import console, print_done


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    bundle: Path = typer.Argument(..., help="Bundle directory (from `visionrt export`)."),
    port: int = typer.Option(8000, "--port", help="HTTP port (KServe v2 REST)."),
    grpc_port: int = typer.Option(8001, "--grpc-port", help="gRPC port."),
    metrics_port: int = typer.Option(8002, "--metrics-port", help="Prometheus metrics port."),
    instances: int = typer.Option(1, "--instances", help="Model instances (processes); the CPU "
                                  "threads are shared out between them."),
    max_queue_delay_us: int = typer.Option(
        0, "--max-queue-delay-us", help="How long Triton may hold a request to form a larger "
        "batch (0: batch whatever queued while the model was busy)."),
    backend: str = typer.Option("auto", "--backend", help="auto, onnxruntime, openvino, "
                                "tensorrt, onnxruntime-trt."),
    precision: str = typer.Option("auto", "--precision", help="auto, fp32, fp16, bf16, int8 "
                                  "(explicit = exact)."),
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on (0.0.0.0: all)."),
    name: str = typer.Option("", "--name", help="Model name in Triton (default: the bundle "
                             "directory's name)."),
    workdir: Path | None = typer.Option(None, "--workdir", help="Keep the repository and "
                                        "tritonserver.log here (default: a temporary "
                                        "directory, removed on exit)."),
    ready_timeout: float = typer.Option(180.0, "--ready-timeout",
                                        help="Seconds the server may take to start."),
    reload: bool = typer.Option(True, "--reload/--no-reload", help="Reload the model when "
                                "the bundle is exported again."),
) -> None:
    """Serve a bundle on Triton Inference Server (HTTP, gRPC, metrics) until Ctrl-C."""
    from visionrt.cli._console import cache_settings
    from visionrt.exporter.triton_python import PythonModelOptions
    from visionrt.serve.server import ServerPorts
    from visionrt.serve.service import ServeConfig, Service

    config = ServeConfig(
        bundle=bundle, ports=ServerPorts(port, grpc_port, metrics_port), host=host,
        model=PythonModelOptions(backend=backend, precision=precision, instances=instances,
                                 max_queue_delay_us=max_queue_delay_us, **cache_settings()),
        name=name, workdir=workdir, ready_timeout=ready_timeout, reload=reload)
    service = Service(config)
    # Until the server is ready, SIGTERM interrupts like Ctrl-C (the start is rolled back).
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with console.status(f"starting tritonserver on {bundle} ..."):
            service.start()
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        _print_ready(service)
        service.run(stop, report=lambda message: console.print(f"[dim]{message}[/]"))
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        service.stop()
    print_done("tritonserver stopped")


def _print_ready(service: Any) -> None:
    server, config = service.server, service.config
    shown = "localhost" if config.host in ("0.0.0.0", "") else config.host
    info = service.model_info() or {}
    runs = (f"{info.get('backend', '?')} {info.get('precision', '?')} on "
            f"{info.get('device', '?')}, {config.model.instances} instance(s)")
    print_done(f"serving {config.bundle} as model '{config.name}' on Triton "
               f"{service.triton_version()}")
    for label, value in (
            ("HTTP", f"http://{shown}:{server.ports.http}/v2/models/{config.name}"),
            ("gRPC", f"grpc://{shown}:{server.ports.grpc}"),
            ("metrics", f"http://{shown}:{server.ports.metrics}/metrics"),
            ("runs", runs),
            ("try", f"visionrt predict --server http://{shown}:{server.ports.http} IMAGE")):
        console.print(f"  {label:<8} {value}", soft_wrap=True, highlight=False)
    console.print("Ctrl-C (or SIGTERM) stops the server.")
