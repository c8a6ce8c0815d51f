"""One real tritonserver serving a tiny bundle, through the real tritonclient (HTTP and gRPC)."""

from __future__ import annotations

import json
import re
import struct
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from visionrt.cli import app
from visionrt.runtime.classifier import Classifier

pytestmark = pytest.mark.usefixtures("requires_triton")


@pytest.fixture(scope="module")
def local(served_bundle: Path):
    clf = Classifier.load(served_bundle)  # the same auto choice the server's model makes
    yield clf
    clf.close()


@pytest.fixture(scope="module", params=["http", "grpc"])
def remote(request, service):
    from visionrt.client import RemoteClassifier

    url = service.server.http_url if request.param == "http" else service.server.grpc_url
    with RemoteClassifier(url) as clf:
        yield clf


@pytest.fixture
def mixed(images: list[Path], tmp_path: Path) -> list[Path]:
    """Good images with a non-image, a truncated JPEG and a missing file among them."""
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"this is not an image")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(images[0].read_bytes()[:300])
    return [images[0], bad, images[1], truncated, images[2], tmp_path / "missing.png", *images[3:]]


def test_remote_predictions_equal_in_process(remote, local, images):
    got, want = remote.predict(images, top_k=3), local.predict(images, top_k=3)
    assert [p.input for p in got] == [str(p) for p in images]
    assert [p.label for p in got] == [p.label for p in want]
    assert [[t.index for t in p.top_k] for p in got] == [[t.index for t in p.top_k] for p in want]
    delta = np.abs(remote.predict_proba(images) - local.predict_proba(images)).max()
    assert delta <= 1e-5, delta
    assert remote.labels == local.labels and remote.info()["arch"] == "tiny_seed0"


def test_a_bad_file_fails_alone_with_the_local_error_text(remote, local, mixed):
    got, want = remote.predict(mixed), local.predict(mixed)
    assert [p.ok for p in got] == [p.ok for p in want] == [
        True, False, True, False, True, False, *[True] * (len(mixed) - 6)]
    for remote_result, local_result in zip(got, want, strict=True):
        if local_result.ok:
            assert remote_result.label == local_result.label
            assert abs(remote_result.score - local_result.score) <= 1e-5
        else:  # decoded on the server, yet the same class and text as in-process
            assert (remote_result.kind, remote_result.error) == (local_result.kind,
                                                                 local_result.error)
    probs = remote.predict_proba(mixed, errors="report")
    assert np.isnan(probs[1]).all() and np.isfinite(probs[0]).all()


def test_pixels_input(remote, local):
    rng = np.random.default_rng(5)
    arrays = [rng.integers(0, 256, (41, 77, 3), dtype=np.uint8),
              rng.integers(0, 256, (90, 30, 3), dtype=np.uint8)]
    delta = np.abs(remote.predict_proba(arrays) - local.predict_proba(arrays)).max()
    assert delta <= 1e-5


def test_sixteen_concurrent_clients_are_all_answered(service, local, images):
    from visionrt.client import RemoteClassifier

    want = [p.label for p in local.predict(images)]
    answers: dict[int, list[str]] = {}
    failures: list[BaseException] = []

    def client(index: int) -> None:
        url = service.server.grpc_url if index % 2 else service.server.http_url
        try:
            with RemoteClassifier(url, concurrency=4) as clf:
                answers[index] = [p.label if p.ok else p.error for p in clf.predict(images)]
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not failures, failures
    assert sorted(answers) == list(range(16))
    assert all(labels == want for labels in answers.values())


def _batch_counts(statistics: dict) -> dict[int, int]:
    stats = statistics["model_stats"][0]
    return {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}


def test_dynamic_batching_forms_batches_under_load(service, images):
    from visionrt.client import RemoteClassifier

    with RemoteClassifier(service.server.http_url, concurrency=48) as clf:
        before = clf.statistics()["model_stats"][0]
        before_batches = _batch_counts(clf.statistics())
        results = clf.predict(images * 8)
        after = clf.statistics()["model_stats"][0]
        after_batches = _batch_counts(clf.statistics())
    assert all(p.ok for p in results)
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == len(results)
    assert executions < inferences  # average formed batch > 1
    formed = {size: count - before_batches.get(size, 0) for size, count in after_batches.items()}
    assert any(size > 1 and count > 0 for size, count in formed.items()), formed


def _metric(service, name: str) -> float:
    with urllib.request.urlopen(service.server.metrics_url, timeout=30) as response:
        text = response.read().decode()
    pattern = rf'^{name}{{model="{service.config.name}",version="1"}} (\S+)$'
    values = [float(m) for m in re.findall(pattern, text, re.MULTILINE)]
    assert values, f"{name} not in the metrics"
    return sum(values)


def test_metrics_count_the_requests(service, remote, images, mixed):
    before = _metric(service, "nv_inference_count")
    requests_before = _metric(service, "nv_inference_request_success")
    results = remote.predict(images[:5])
    assert all(p.ok for p in results)
    assert _metric(service, "nv_inference_count") - before == 5
    assert _metric(service, "nv_inference_request_success") - requests_before == 5


def test_curl_style_requests(service, local, images):
    """What the README's curl examples send: JSON pixels, and a file in Triton's binary
    extension, both with the classification extension's top-k labels."""
    name, url = service.config.name, service.server.http_url
    array = np.asarray(local.preprocess(images[0]))
    body = {"inputs": [{"name": "pixels", "shape": [1, *array.shape], "datatype": "UINT8",
                        "data": array.reshape(-1).tolist()}],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}]}
    request = urllib.request.Request(f"{url}/v2/models/{name}/infer",
                                     data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    score, index, label = answer["outputs"][0]["data"][0].split(":")
    expected = local.predict([array], top_k=1)[0]
    assert (int(index), label) == (expected.index, expected.label)

    data = images[1].read_bytes()
    header = json.dumps({"inputs": [{"name": "image_file", "shape": [1, 1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(data) + 4}}],
                         "outputs": [{"name": "probabilities",
                                      "parameters": {"classification": 1}}]}).encode()
    request = urllib.request.Request(
        f"{url}/v2/models/{name}/infer", data=header + struct.pack("<I", len(data)) + data,
        headers={"Inference-Header-Content-Length": str(len(header)),
                 "Content-Type": "application/octet-stream"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    label = answer["outputs"][0]["data"][0].split(":")[2]
    assert label == local.predict([images[1]])[0].label


@pytest.mark.parametrize("output_format", ["json", "csv"])
def test_predict_cli_with_server_matches_local(service, served_bundle, mixed, output_format):
    files = [str(p) for p in mixed]
    runner = CliRunner()
    local_run = runner.invoke(app, ["predict", str(served_bundle), *files, "--format",
                                    output_format, "--top-k", "2"])
    remote_run = runner.invoke(app, ["predict", "--server", service.server.http_url, *files,
                                     "--format", output_format, "--top-k", "2"])
    assert local_run.exit_code == remote_run.exit_code == 1  # bad files among them
    if output_format == "json":
        got, want = json.loads(remote_run.stdout), json.loads(local_run.stdout)
        assert [r.get("error") for r in got] == [r.get("error") for r in want]
        for g, w in zip(got, want, strict=True):
            assert [t["label"] for t in g.get("top_k", [])] == [t["label"] for t in
                                                                 w.get("top_k", [])]
            for gt, wt in zip(g.get("top_k", []), w.get("top_k", []), strict=True):
                assert abs(gt["score"] - wt["score"]) <= 1e-5
    else:
        assert remote_run.stdout.splitlines()[0] == local_run.stdout.splitlines()[0]
        assert len(remote_run.stdout.splitlines()) == len(local_run.stdout.splitlines())


def test_predict_cli_table_names_the_server(service, images):
    result = CliRunner().invoke(app, ["predict", "--server", service.server.grpc_url,
                                      str(images[0])], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert service.server.grpc_url in result.output and "1 classified, 0 failed" in result.output


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bench_server_reports_client_and_triton_statistics(service, images, tmp_path, protocol):
    port = service.server.ports.http if protocol == "http" else service.server.ports.grpc
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, [
        "bench", "--server", f"127.0.0.1:{port}", "--protocol", protocol, "--concurrency",
        "1,8", "--duration", "1.5", "--warmup", "0.3", "--images", str(images[0].parent),
        "--json", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Triton queue ms" in result.output and "avg batch" in result.output
    report = json.loads(out.read_text())
    assert report["config"]["model"] == service.config.name
    rows = {row["concurrency"]: row for row in report["results"]}
    assert sorted(rows) == [1, 8] and {row["protocol"] for row in rows.values()} == {protocol}
    for row in rows.values():
        assert row["requests"] > 0 and row["errors"] == 0
        assert row["images_per_s"] == row["requests_per_s"] > 0
        assert row["latency_ms"]["p99"] >= row["latency_ms"]["p50"] > 0
        # Triton saw (at least) the window's requests, in batches of at least one
        assert row["triton"]["requests"] >= row["requests"] * 0.9
        assert row["triton"]["batches"] >= 1 and row["triton"]["compute_ms"] > 0
    assert rows[1]["triton"]["average_batch"] == pytest.approx(1.0, abs=0.05)
    assert rows[8]["triton"]["average_batch"] > 1.0  # 8 clients, a 5 ms queue delay
