"""The CLI as a user meets it: help, version, one-line errors with exit code 1."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from visionrt import __version__
from visionrt.cli import COMMAND_MODULES, app

runner = CliRunner()


def visionrt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "visionrt", *args], capture_output=True,
                          text=True, timeout=300)


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("synth", "train", "evaluate", "summary", "augment-preview", "export", "predict",
                 "bench", "doctor", "quickstart"):
        assert name in result.output
    assert f"visionrt {__version__}" in runner.invoke(app, ["--version"]).output


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_every_command_has_help(name):
    command = name.replace("_", "-")
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_library_error_is_one_line_and_exit_1(tmp_path):
    result = visionrt("synth", str(tmp_path / "d"), "--classes", "99")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "--classes 99 is invalid; expected 2..8" in result.stderr  # the flag as typed
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_error_exits_2():
    result = visionrt("synth")
    assert result.returncode == 2


def test_synth_is_deterministic(tmp_path):
    from visionrt.synth import make_synthetic_dataset

    a = make_synthetic_dataset(tmp_path / "a", classes=3, per_class=2, size=32, seed=5)
    b = make_synthetic_dataset(tmp_path / "b", classes=3, per_class=2, size=32, seed=5)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert len(files_a) == 6
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_doctor_json_reports_backends():
    import json

    result = runner.invoke(app, ["doctor", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    names = {b["name"]: b["usable"] for b in data["backends"]}
    assert names["onnxruntime"] is True
    assert data["ort_providers"]["CPUExecutionProvider"] == "loads"


def test_doctor_identity_model_runs_in_onnxruntime():
    import numpy as np
    import onnxruntime as ort

    from visionrt.cli.diagnostics import identity_model_bytes

    session = ort.InferenceSession(identity_model_bytes(), providers=["CPUExecutionProvider"])
    x = np.array([3.5], dtype=np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x)


def test_cache_settings_come_from_the_environment_at_the_edge(monkeypatch, tmp_path) -> None:
    from visionrt.cli._console import cache_settings

    monkeypatch.delenv("VISIONRT_CACHE_DIR", raising=False)
    monkeypatch.delenv("VISIONRT_CACHE_MAX_MB", raising=False)
    assert cache_settings() == {}
    monkeypatch.setenv("VISIONRT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("VISIONRT_CACHE_MAX_MB", "64")
    assert cache_settings() == {"cache_dir": tmp_path, "cache_max_mb": 64}


def test_the_library_reads_no_visionrt_variable(monkeypatch, tmp_path) -> None:
    from visionrt.runtime.base import cache_root

    monkeypatch.setenv("VISIONRT_CACHE_DIR", str(tmp_path / "ignored"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "visionrt"


# Flags of other programs that visionrt's messages mention on purpose.
FOREIGN_FLAGS = {"--nproc", "--shm-size", "--force-reinstall",
                 # tritonserver's command line, as visionrt serve starts it
                 "--model-repository", "--backend-directory", "--model-control-mode",
                 "--load-model", "--http-port", "--http-address", "--grpc-address",
                 "--metrics-address", "--backend-config", "--exit-timeout-secs", "--log-verbose"}


def test_no_message_names_a_flag_that_does_not_exist():
    """Every --flag written anywhere in visionrt's source is an option of some visionrt command."""
    import re
    from pathlib import Path

    import typer.main

    import visionrt

    command = typer.main.get_command(app)
    known = {"--help", "--version", "--verbose"}
    for sub in command.commands.values():
        for param in sub.params:
            known.update(param.opts, getattr(param, "secondary_opts", ()))
    root = Path(visionrt.__file__).parent
    mentioned = {(m.group(0), path.relative_to(root).as_posix())
                 for path in root.rglob("*.py")
                 for m in re.finditer(r"(?<![\w-])--[a-z][a-z0-9-]+", path.read_text("utf-8"))}
    unknown = sorted((flag, where) for flag, where in mentioned
                     if flag not in known | FOREIGN_FLAGS)
    assert not unknown
    assert ("--precision", "runtime/openvino.py") in mentioned  # the scan sees messages


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_help_shows_whole_option_names_and_defaults(name):
    """Not a terminal (CliRunner): no option name is cut, no help text is eaten as markup."""
    import typer.main

    command = typer.main.get_command(app).commands[name.replace("_", "-")]
    text = runner.invoke(app, [name.replace("_", "-"), "--help"]).output
    assert "…" not in text
    words = set(text.replace("/", " ").replace(",", " ").split())
    for param in command.params:
        for option in (*param.opts, *getattr(param, "secondary_opts", ())):
            assert option in words or not option.startswith("--"), option
        if param.show_default and param.default not in (None, False, "", ()):
            assert "[default:" in _help_entry(text, param.opts[0]), param.opts[0]


def _help_entry(text: str, option: str) -> str:
    """The help lines of ``option``: its own line and the indented lines that continue it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(option + " ")
                 or line.strip() == option or line.strip().startswith(option + ","))
    entry = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(" " * 8) or line.strip().startswith("-"):
            break
        entry.append(line)
    return " ".join(" ".join(entry).split())


def test_train_help_keeps_bracketed_defaults():
    text = " ".join(runner.invoke(app, ["train", "--help"]).output.split())
    assert "Epochs in total (default: 5)." in text
    assert "--unfreeze-lr-factor" in text and "[default: 0.01]" in text


@pytest.mark.parametrize("command", [("doctor",), ("summary", "resnet18"),
                                     ("evaluate", "RUN", "DATA")])
def test_an_unknown_format_is_refused_naming_the_flag(command, tmp_path):
    """evaluate took any --format but json as "table"; all say it alike, before any work."""
    from visionrt.errors import ConfigError

    args = [str(tmp_path) if a in ("RUN", "DATA") else a for a in command]
    result = runner.invoke(app, [*args, "--format", "xml"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "--format xml is invalid; expected one of table, json"
