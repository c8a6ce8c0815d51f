import json

import pytest

from visionrt.errors import ConfigError
from visionrt.spec import SCHEMA_VERSION, ModelSpec


def make(**kw):
    base = dict(arch="resnet18", labels=("cat", "dog"))
    base.update(kw)
    return ModelSpec(**base)


def test_json_round_trip_is_lossless(tmp_path):
    spec = make(input_size=(299, 299), crop_pct=1.0, interpolation="bicubic",
                mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_dtype="float32",
                input_layout="NCHW")
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    path = spec.save(tmp_path / "spec.json")
    assert ModelSpec.load(path) == spec
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["labels"] == ["cat", "dog"]


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("labels", (), "labels"),
        ("labels", ("a", "a"), "unique"),
        ("input_size", (4, 4), "input_size"),
        ("crop_pct", 1.5, "crop_pct"),
        ("interpolation", "cubic", "interpolation"),
        ("std", (0.0, 1.0, 1.0), "std"),
        ("input_layout", "CHW", "input_layout"),
        ("output_activation", "sigmoid", "two labels"),
    ],
)
def test_invalid_values_name_the_field(field, value, fragment):
    kwargs = {field: value}
    if field == "output_activation":
        kwargs["labels"] = ("a", "b", "c")
    with pytest.raises(ConfigError, match=fragment):
        make(**kwargs)


def test_unknown_fields_and_newer_schema_are_refused():
    data = make().to_dict()
    with pytest.raises(ConfigError, match="unknown fields"):
        ModelSpec.from_dict({**data, "future_field": 1})
    with pytest.raises(ConfigError, match="schema_version"):
        ModelSpec.from_dict({**data, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelSpec.from_json("{nope")


def test_derived_shapes():
    spec = make(input_size=(224, 224), crop_pct=0.875)
    assert spec.resize_size == 256
    assert spec.input_shape(4) == (4, 224, 224, 3)
    assert make(input_layout="NCHW", input_dtype="float32").input_shape(2) == (2, 3, 224, 224)
    assert make(output_activation="sigmoid").num_outputs == 1
    assert make().num_outputs == 2
