"""Fuzzing of visionrt.images.load_image (catalogue E1): seed replay, findings, bounded fuzz run.

The property (benchmarks/fuzz_images.py ``check_one``): a uint8 (H, W, 3) array within the limits,
or an ImageError / InputValidationError, nothing else.
"""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import load_benchmark
from PIL import Image

from visionrt import images
from visionrt.errors import ImageError

ROOT = Path(__file__).resolve().parents[2]
FUZZ_SCRIPT = ROOT / "benchmarks" / "fuzz_images.py"


fuzz = load_benchmark("fuzz_images")
SEEDS = fuzz.seed_inputs()  # built once, not once per parametrized case


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_E1_seed_corpus_satisfies_the_property(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        fuzz.check_one(SEEDS[name])


def _tiff_with_bad_second_page() -> bytes:
    """Fuzz finding: page 2 has compression 1798; Pillow's n_frames raised KeyError."""
    frames = [Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    data = bytearray(buf.getvalue())
    first = int.from_bytes(data[4:8], "little")
    count = int.from_bytes(data[first:first + 2], "little")
    second = int.from_bytes(data[first + 2 + 12 * count:first + 6 + 12 * count], "little")
    for i in range(int.from_bytes(data[second:second + 2], "little")):
        entry = second + 2 + 12 * i
        if int.from_bytes(data[entry:entry + 2], "little") == 259:  # Compression
            data[entry + 8:entry + 10] = (1798).to_bytes(2, "little")
    return bytes(data)


def test_E1_finding_tiff_unknown_compression_on_page_two():
    out = images.load_image(_tiff_with_bad_second_page())
    assert tuple(out[0, 0]) == (255, 0, 0)  # page 1 is fine; page 2 is never read


def test_E1_finding_bomb_warning_under_warnings_as_errors():
    # Fuzz finding: with warnings as errors, Image.open raised DecompressionBombWarning itself.
    bomb = fuzz._png_with_ihdr(12_000, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fuzz.check_one(bomb) == "ImageTooLargeError"


def test_E1_finding_any_pillow_exception_becomes_an_image_error(monkeypatch):
    # Pillow plugins raise arbitrary types on hostile bytes; whatever they raise is typed.
    data = SEEDS["rgb.png"]
    for exc in (KeyError(7), ZeroDivisionError("x"), AttributeError("y"), RecursionError()):
        def boom(self, exc=exc):
            raise exc

        monkeypatch.setattr(Image.Image, "load", boom)
        monkeypatch.setattr("PIL.ImageFile.ImageFile.load", boom)
        with pytest.raises(ImageError, match=type(exc).__name__):
            images.load_image(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on mangled TIFF metadata
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_E1_mutate_engine_short_run(tmp_path):
    corpus = tmp_path / "corpus"
    fuzz.write_corpus(corpus)
    code = fuzz.run_mutate(corpus, tmp_path / "artifacts", seconds=3, timeout=10, seed=7)
    assert code == 0
    assert not (tmp_path / "artifacts").exists()


def test_E1_property_checker_detects_violations(monkeypatch):
    # The harness itself must be able to fail: a wrong dtype and a foreign exception are findings.
    monkeypatch.setattr(images, "load_image", lambda *a, **k: np.zeros((4, 4, 3), np.float32))
    with pytest.raises(fuzz.PropertyViolation):
        fuzz.check_one(b"x")

    def foreign(*a, **k):
        raise KeyError("boom")

    monkeypatch.setattr(images, "load_image", foreign)
    with pytest.raises(KeyError):
        fuzz.check_one(b"x")


@pytest.mark.slow
def test_E1_fuzz_load_image_bounded(tmp_path):
    """Coverage-guided (atheris) or random-mutation fuzzing for 45 s: no finding."""
    cmd = [sys.executable, str(FUZZ_SCRIPT), "--seconds", "45", "--timeout", "10",
           "--corpus", str(tmp_path / "corpus"), "--artifacts", str(tmp_path / "artifacts")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    findings = list((tmp_path / "artifacts").glob("*")) if (tmp_path / "artifacts").exists() \
        else []
    assert findings == [], tail
    assert "Done" in tail or "findings=0" in tail, tail
