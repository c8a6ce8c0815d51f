"""Sensitivity-guided mixed precision: chains, the greedy search, and an export whose search keeps
layers in float and records them and their measured speed cost in the manifest."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from visionrt.exporter import mixed  # noqa: E402


class ChainNet(torch.nn.Module):
    """Two MobileNet-style blocks (expand -> ReLU6 -> depthwise -> ReLU6 -> linear conv)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        conv = torch.nn.Conv2d
        self.blocks = torch.nn.ModuleList(
            torch.nn.ModuleList([conv(c_in, 16, 1), conv(16, 16, 3, padding=1, groups=16),
                                 conv(16, 8, 1)]) for c_in in (3, 8))
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for expand, depthwise, linear in self.blocks:
            x = linear(torch.clamp(depthwise(torch.clamp(expand(x), 0, 6)), 0, 6))
        return self.head(x.mean((2, 3)))


@pytest.fixture(scope="module")
def chain_net(tiny_data, tiny_spec):
    """ChainNet fitted to the tiny set, then given an outlier channel that the next block ignores:
    the function is unchanged, but the first block's output range (one int8 scale) grows 100x."""
    from visionrt.images import normalize

    pixels, labels = tiny_data
    x, y = torch.from_numpy(normalize(pixels, tiny_spec)), torch.from_numpy(labels)
    model = ChainNet(len(tiny_spec.labels))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        model.blocks[0][2].bias[0] += 200.0
        model.blocks[1][0].weight[:, 0] = 0.0
    return model.eval()


@pytest.fixture(scope="module")
def chain_graph(tmp_path_factory, tiny_spec, chain_net):
    from visionrt.exporter.onnx import export_onnx, graph_spec

    path = tmp_path_factory.mktemp("chains") / "chains.onnx"
    export_onnx(chain_net, graph_spec(tiny_spec, "graph"), path, max_batch=8)
    return path


def test_chains_are_expand_depthwise_runs_without_the_linear_conv(chain_graph):
    proto = onnx.load(str(chain_graph))
    found = mixed.chains(proto)
    ops = {n.name: n.op_type for n in proto.graph.node}
    assert len(found) == 2
    for chain in found:
        assert [ops[n] for n in chain] == ["Conv", "Clip", "Conv", "Clip"]
    linear = [n.name for n in proto.graph.node if n.op_type == "Conv"][2::3]
    assert not set(linear) & {n for c in found for n in c}


def test_stem_chain_is_the_chain_on_the_image(chain_graph):
    proto = onnx.load(str(chain_graph))
    first_conv = next(n.name for n in proto.graph.node if n.op_type == "Conv")
    assert mixed.stem_chain(proto) == mixed.chains(proto)[0]
    assert mixed.stem_chain(proto)[0] == first_conv
    del proto.graph.node[:]  # no convs: no stem
    assert mixed.stem_chain(proto) == []


def test_export_keeps_the_stem_in_float_by_default(tmp_path, chain_net, tiny_spec,
                                                   tiny_imagefolder):
    """Default: both int8 graphs leave the stem chain's convs unquantized, name it in the manifest,
    and the search does not count it among its candidates; --int8-stem int8 quantizes it."""
    from visionrt.bundle import load_bundle
    from visionrt.exporter.calibration import images_from_path
    from visionrt.exporter.config import ExportConfig
    from visionrt.exporter.pipeline import export_model

    def export(out, **changes):
        config = ExportConfig(out=out, precisions=("fp32", "int8"), max_batch=8, calib_samples=18,
                              verify_samples=18, calib_batch=6, int8_target=1.0, int8_max_float=0,
                              allow_mismatch=True, **changes)
        export_model(chain_net, tiny_spec, config,
                     images=images_from_path(tiny_imagefolder, tiny_spec.labels))
        return {a.file: a.quantization for a in load_bundle(out).artifacts if a.quantization}

    records = export(tmp_path / "d")
    proto = onnx.load(str(tmp_path / "d" / "model.fp32.onnx"))
    stem = mixed.stem_chain(proto)
    assert len(stem) == 4
    for file, record in records.items():
        assert record["float_stem"] == stem and set(stem) <= set(record["excluded_nodes"]), file
        graph = onnx.load(str(tmp_path / "d" / file))
        producers = {o: n for n in graph.graph.node for o in n.output}
        convs = [n for n in graph.graph.node if n.op_type == "Conv"]
        quantized = {n.name for n in convs if producers.get(n.input[1]) is not None
                     and producers[n.input[1]].op_type == "DequantizeLinear"}
        assert not quantized & set(stem) and quantized, file
    assert records["model.int8.onnx"]["mixed_precision"]["candidate_chains"] == 1
    quantized_stem = export(tmp_path / "q", int8_stem="int8")
    assert all(r["float_stem"] == [] for r in quantized_stem.values())
    assert quantized_stem["model.int8.onnx"]["mixed_precision"]["candidate_chains"] == 2


def test_score_measures_agreement_and_kl():
    ref = np.array([[2.0, 0.0], [0.0, 2.0]])
    assert mixed.score(ref, ref) == mixed.Score(1.0, 0.0, 1.0, 1.0)
    flipped = mixed.score(ref, ref[:, ::-1])
    assert flipped.agreement == 0.0 and flipped.kl > 1.0 and flipped.confident == 0.0
    near_tie = mixed.score(np.array([[0.1, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]]),
                           np.array([[0.0, 0.1, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]]))
    assert near_tie.agreement == 0.5 and near_tie.confident == 1.0
    assert near_tie.meets(0.97) and not mixed.Score(1.0, 0.0, 1.0, 0.9).meets(0.97)
    assert not mixed.Score(1.0, 2 * mixed.MAX_KL, 1.0, 1.0).meets(0.97)  # drifts too far


def test_search_adds_the_most_harmful_chains_first_and_stops_at_the_target():
    chains = [["a"], ["b"], ["c"]]
    harm = {"a": 0.001, "b": 0.005, "c": 0.002}  # KL each chain adds when quantized
    built = []

    def build(nodes):
        built.append(tuple(nodes))
        return tuple(nodes)

    def measure(nodes):
        kl = sum(v for k, v in harm.items() if k not in nodes)
        return mixed.Score(agreement=1.0 - 10 * kl, kl=kl, confident=1.0 - 10 * kl)

    result = mixed.search(build, measure, chains, target=0.985, max_chains=3)
    assert result.float_chains == (("b",), ("c",)) and result.met
    assert [s["float_chains"] for s in result.steps] == [0, 1, 2]
    capped = mixed.search(build, measure, chains, target=0.999, max_chains=1)
    assert capped.float_chains == (("b",),) and not capped.met
    unreachable = mixed.search(build, measure, chains, target=1.0, max_chains=2)
    assert unreachable.float_chains == (("b",), ("c",)) and not unreachable.met

    def noisy(nodes):  # floating "a" on top of the others makes things worse: keep two
        kl = measure(nodes).kl + (0.004 if "a" in nodes else 0.0)
        return mixed.Score(agreement=1.0 - 10 * kl, kl=kl, confident=1.0 - 10 * kl)

    closest = mixed.search(build, noisy, chains, target=1.0, max_chains=3)
    assert closest.float_chains == (("b",), ("c",)) and not closest.met
    assert len(closest.steps) == 4  # every step is recorded, the best prefix is kept
    none = mixed.search(build, measure, chains, target=0.9, max_chains=3)
    assert none.float_chains == () and none.met and len(none.steps) == 1


def test_export_keeps_chains_in_float_and_records_them_and_their_cost(
        tmp_path, chain_net, tiny_spec, tiny_imagefolder):
    """The ISSUE-14 option end to end: an unreachable target keeps the allowed number of chains in
    float; the manifest names them, the graph really leaves them unquantized, the speed cost was
    measured, and the S8S8 graph searched its own."""
    from visionrt.bundle import load_bundle
    from visionrt.exporter.calibration import images_from_path
    from visionrt.exporter.config import ExportConfig
    from visionrt.exporter.pipeline import export_model

    config = ExportConfig(out=tmp_path / "b", precisions=("fp32", "int8"), max_batch=8,
                          calib_samples=18, verify_samples=18, calib_batch=6,
                          int8_rounding="nearest", int8_target=1.0, int8_max_float=1,
                          int8_stem="int8", allow_mismatch=True)
    export_model(chain_net, tiny_spec, config,
                 images=images_from_path(tiny_imagefolder, tiny_spec.labels))
    bundle = load_bundle(tmp_path / "b")
    cpu = next(a for a in bundle.artifacts if a.file == "model.int8.onnx")
    trt = next(a for a in bundle.artifacts if a.file == "model.int8.trt.onnx")
    record = cpu.quantization["mixed_precision"]
    assert record["target_top1_agreement"] == 1.0 and record["candidate_chains"] == 2
    assert len(record["float_chains"]) == 1 and len(record["float_nodes"]) == 4, record["steps"]
    speed = record["speed"]
    assert speed["relative_throughput"] > 0 and speed["int8_images_per_s"] > 0
    trt_float = trt.quantization["mixed_precision"]["float_nodes"]  # its own search
    assert trt_float and set(trt_float) <= set(trt.quantization["excluded_nodes"])
    assert set(record["float_nodes"]) <= set(cpu.quantization["excluded_nodes"])
    graph = onnx.load(str(tmp_path / "b" / "model.int8.onnx"))
    producers = {o: n for n in graph.graph.node for o in n.output}
    for node in graph.graph.node:
        if node.name in record["float_nodes"] and node.op_type == "Conv":
            weight = producers.get(node.input[1])
            assert weight is None or weight.op_type != "DequantizeLinear", node.name
    assert cpu.quantization["weight_rounding"]["mode"] == "nearest"


def test_int8_target_is_validated(tmp_path):
    from visionrt.errors import ConfigError
    from visionrt.exporter.config import ExportConfig

    with pytest.raises(ConfigError, match="--int8-target 1.5 is invalid"):
        ExportConfig(out=tmp_path, int8_target=1.5)
    with pytest.raises(ConfigError, match="--int8-rounding stochastic is invalid"):
        ExportConfig(out=tmp_path, int8_rounding="stochastic")
    with pytest.raises(ConfigError, match="--int8-max-float -1 is invalid"):
        ExportConfig(out=tmp_path, int8_max_float=-1)
    with pytest.raises(ConfigError, match="--int8-stem fp16 is invalid"):
        ExportConfig(out=tmp_path, int8_stem="fp16")
